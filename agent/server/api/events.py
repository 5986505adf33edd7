"""``GET /v1/events``: Server-Sent Events (``sample``, ``job``, ``model``, ``health``, ``log``, and on a
multi-camera agent ``camera``: one Sample per enabled camera and tick, ``camera_name`` saying which).

Each event is ``id: N`` / ``event: NAME`` / ``data: <one JSON protocol model>``. A ``: ping`` comment
goes out every 15 s so proxies and the console can tell a quiet stream from a dead one. A client that
reconnects with ``Last-Event-ID`` gets the events it missed, as far as the agent still holds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from agent.core.errors import AgentError
from agent.core.events import EVENT_NAMES, EventBus
from agent.server.api.deps import Service

router = APIRouter(tags=["events"])

_NAME = "(" + "|".join(EVENT_NAMES) + ")"
EVENTS_PATTERN = f"^ *{_NAME} *(, *{_NAME} *)*$"

PING_EVERY_S = 15.0
RETRY_MS = 2000  # how soon a browser-style client reconnects


async def _stream(bus: EventBus, last_id: int | None, names: frozenset[str]) -> AsyncIterator[bytes]:
    sub = bus.subscribe(last_id)
    loop = asyncio.get_running_loop()
    try:
        # An immediate first chunk: the client sees the stream open even before the first event.
        yield f"retry: {RETRY_MS}\n: fieldtui-agent events\n\n".encode()
        next_ping = loop.time() + PING_EVERY_S
        while True:
            event = await sub.get(timeout=max(0.0, next_ping - loop.time()))
            if event is None and sub.closed:
                return  # the agent is shutting down
            if event is not None and event.name in names:
                yield event.encode()
            # Let the loop run between events: with a backlog queued, nothing else here awaits, and
            # the loop must get to see a client that went away (and to serve everyone else).
            await asyncio.sleep(0)
            if loop.time() >= next_ping:
                next_ping = loop.time() + PING_EVERY_S
                yield b": ping\n\n"
    finally:
        bus.unsubscribe(sub)


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"}},
)
async def events(
    service: Service,
    only: Annotated[
        str | None,
        Query(
            alias="events",
            max_length=64,
            description="comma-separated event names; default all",
            json_schema_extra={"pattern": EVENTS_PATTERN},
        ),
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    names = frozenset(EVENT_NAMES)
    if only:
        names = frozenset(n.strip() for n in only.split(",") if n.strip())
        unknown = sorted(names - set(EVENT_NAMES))
        if unknown or not names:
            raise AgentError(
                f"unknown event name(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(EVENT_NAMES)}",
                status=422,
            )
    last_id = int(last_event_id) if last_event_id and last_event_id.strip().isdecimal() else None
    return StreamingResponse(
        _stream(service.bus, last_id, names),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
