"""Latency, FPS and confidence a minute at a time, the last 24 hours (agent/frames/series.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agent.server.api.deps import Service
from fieldtui.protocol.series import SeriesPage

router = APIRouter(tags=["series"])


@router.get("/v1/series", response_model=SeriesPage)
def series(
    service: Service,
    since: Annotated[float | None, Query(description="only minutes after this Unix time")] = None,
    camera: Annotated[str | None, Query(max_length=64, description="one camera's points")] = None,
) -> SeriesPage:
    return service.series.page(since, camera)
