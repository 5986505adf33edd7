"""``GET /v1/snapshot.jpg``: the latest frame with its detections drawn (authenticated, like all of /v1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from agent.core.errors import AgentError
from agent.frames.snapshot import render_snapshot
from agent.server.api.deps import Service
from fieldtui.protocol import Problem

router = APIRouter(tags=["pipeline"])


@router.get(
    "/v1/snapshot.jpg",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the annotated frame"},
        503: {"model": Problem, "description": "no frame processed yet"},
    },
)
def snapshot(
    service: Service,
    width: Annotated[
        int | None, Query(ge=16, le=4096, description="scale down to this many pixels wide (never up)")
    ] = None,
) -> Response:
    """The last processed frame, boxes and ``class 0.87`` labels drawn in class colours, as JPEG."""
    pipeline = service.pipeline
    latest = pipeline.latest()
    if latest is None:
        raise AgentError(
            f"no frame yet: the pipeline is {pipeline.state} and has not processed a frame; "
            "GET /v1/status says why",
            status=503,
        )
    image, detections = latest
    body = render_snapshot(image, detections, pipeline.detector.names, width=width)
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
