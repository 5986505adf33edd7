"""The control plane's HTTP face: a FastAPI app over an :class:`~agent.server.service.AgentService`.

Routes are thin (parse, call the service, map the result or error); auth is a middleware
(agent/server/api/security.py) and every error is problem+json (agent/server/api/problems.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from agent.server.api import (
    benchmarks,
    cameras,
    engines,
    events,
    forwarding,
    jobs,
    logs,
    models,
    pipeline,
    problems,
    series,
    snapshot,
    system,
)
from agent.server.api.security import BearerAuth, is_public
from agent.server.connguard import InFlight, RequestLimit
from agent.server.service import AgentService
from fieldtui.protocol import __version__


def create_app(service: AgentService) -> FastAPI:
    """The app; its lifespan attaches the event bus to the loop and runs the ~2 Hz telemetry tick."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.attach(asyncio.get_running_loop())
        ticker = asyncio.create_task(service.tick_forever(), name="telemetry")
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    app = FastAPI(
        title="fieldtui-agent",
        version=__version__,
        summary="control plane of a fieldtui edge-AI device",
        docs_url=None,  # a browser cannot send the bearer token; see agent/server/api/security.py
        redoc_url=None,
        lifespan=lifespan,
        responses=dict(problems.PROBLEM_RESPONSES),
    )
    app.state.service = service
    for module in (
        system,
        events,
        jobs,
        pipeline,
        logs,
        snapshot,
        models,
        forwarding,
        benchmarks,
        engines,
        cameras,
        series,
    ):
        app.include_router(module.router)
    # Middleware added last runs first: the catch-all wraps auth, which wraps the in-flight limit
    # (agent/server/connguard.py: only requests with the token count), which wraps the routes.
    app.state.in_flight = InFlight()
    app.add_middleware(RequestLimit, in_flight=app.state.in_flight)
    app.add_middleware(BearerAuth, token=service.token, throttle=service.throttle)
    problems.install(app)
    _declare_security(app)
    return app


def _answers(method: str, operation: dict[str, Any]) -> list[tuple[str, str]]:
    """The error answers a protected operation can give beyond its own: what the middleware and the
    handlers of agent/server/api/problems.py send, so the schema says every status the agent answers."""
    answers = [("503", "too many requests in flight on this agent; retry after Retry-After seconds")]
    if "requestBody" in operation:
        answers.append(("400", "the body is not valid JSON"))
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        answers.append(("404", "nothing by that name or id on this agent"))
    if method in ("post", "put", "delete"):
        answers.append(("409", "another operation is in the way (a job, the serving model); wait and retry"))
        answers.append(("507", "the device's disk is full: what to delete is in the detail"))
    return answers


def _declare_security(app: FastAPI) -> None:
    """State in the OpenAPI document what the middleware and the handlers do: bearer everywhere but the
    public routes, and problem+json for every error."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "`fieldtui-agent token`"}
        }
        schema["security"] = [{"bearer": []}]
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                if is_public(method.upper(), path):
                    operation["security"] = []
                    for code in ("401", "429"):
                        responses.pop(code, None)
                else:
                    for code, description in _answers(method, operation):
                        responses.setdefault(code, {"description": description})
                # every error is problem+json (FastAPI would document its own 422 shape)
                for code, response in responses.items():
                    if code[0] in "45":
                        response["content"] = problem
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"].get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
