"""Trio forwarding: ``GET/PUT /v1/forwarding`` and ``POST /v1/forwarding/test`` (agent/forwarding/forwarder.py).

The API key can be set with PUT and is never returned: GET shows it masked. The PUT body is validated
here rather than by FastAPI, because a validation error of FastAPI's would quote the value sent, and
that value may be the key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from agent.forwarding.store import ForwardingError
from agent.server.api.deps import Service
from fieldtui.protocol import (
    ForwardingState,
    ForwardingUpdate,
    ForwardResult,
    ForwardTestRequest,
    Problem,
    first_error,
)

router = APIRouter(prefix="/v1/forwarding", tags=["forwarding"])

_UPDATE_SCHEMA = ForwardingUpdate.model_json_schema(ref_template="#/components/schemas/{model}")
_UPDATE_SCHEMA.pop("$defs", None)


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ForwardingError("request body is not valid JSON; send a ForwardingUpdate object") from None


@router.get("", response_model=ForwardingState)
def get_forwarding(service: Service) -> ForwardingState:
    """Settings, rules, the key masked, queue depth and counters by outcome and drop reason."""
    return service.forwarding.state()


@router.put(
    "",
    response_model=ForwardingState,
    responses={422: {"model": Problem, "description": "settings that cannot work; nothing changed"}},
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _UPDATE_SCHEMA}}}
    },
)
async def put_forwarding(service: Service, request: Request) -> ForwardingState:
    """Change the fields given (the rest keep their value); ``api_key`` is stored in the agent home
    (0600) and never echoed; ``"api_key": ""`` removes it. Saved before the answer."""
    body = await _json_body(request)
    try:
        update = ForwardingUpdate.model_validate(body)
    except ValidationError as err:
        raise ForwardingError(f"{first_error(err)}; nothing was changed") from None
    return await run_in_threadpool(service.forwarding.update, update)


@router.post("/test", response_model=ForwardResult)
def test_forwarding(service: Service, body: ForwardTestRequest | None = None) -> ForwardResult:
    """One forward now, outside the rules (the latest frame in frame mode): HTTP status, latency, payload
    size, Trio's answer, or the error with what to do. Answers within the timeout (at most 30 s)."""
    body = body or ForwardTestRequest()
    return service.forwarding.test(body.condition, body.timeout_s)
