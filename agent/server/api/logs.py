"""Recent agent log lines (redacted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agent.core.logbuf import LEVELS
from agent.server.api.deps import Service
from fieldtui.protocol import LogPage

router = APIRouter(tags=["logs"])

# the levels in any case, as the schema can say it (JSON Schema patterns have no case-insensitive flag)
LEVEL_PATTERN = "^(" + "|".join("".join(f"[{c}{c.lower()}]" for c in name) for name in LEVELS) + ")$"


@router.get("/v1/logs", response_model=LogPage)
def logs(
    service: Service,
    since: Annotated[float | None, Query(description="only lines after this Unix time")] = None,
    level: Annotated[
        str | None,
        Query(
            max_length=16,
            description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case): that level and up",
            json_schema_extra={"pattern": LEVEL_PATTERN},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> LogPage:
    return service.read_logs(since, level, limit)
