"""Recent agent log lines (redacted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agent.server.api.deps import Service
from fieldtui.protocol import LogPage

router = APIRouter(tags=["logs"])


@router.get("/v1/logs", response_model=LogPage)
def logs(
    service: Service,
    since: Annotated[float | None, Query(description="only lines after this Unix time")] = None,
    level: Annotated[
        str | None, Query(max_length=16, description="DEBUG, INFO, WARNING or ERROR and up")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> LogPage:
    return service.read_logs(since, level, limit)
