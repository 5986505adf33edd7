"""Every error the API returns is ``application/problem+json`` (RFC 9457) with a ``detail`` to act on.

Handlers for the error families (AgentError, unknown route / method, request validation) and an outer
middleware that turns anything unforeseen into a 500 whose detail says where to look, while the
traceback goes to the agent's log and never into a response.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.core.diskspace import full_detail, is_disk_full
from agent.core.errors import AgentError
from fieldtui.protocol import Problem

log = logging.getLogger("fieldtui.agent.api")

PROBLEM_JSON = "application/problem+json"
INTERNAL_DETAIL = "internal error, see `fieldtui-agent` logs (GET /v1/logs) and report it"

# For the OpenAPI schema: the error responses every protected route may give.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or wrong token"},
    429: {"model": Problem, "description": "too many failed token attempts from this address"},
}


def problem(
    status: int, detail: str, *, instance: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = Problem(title=title, status=status, detail=detail, instance=instance)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _where(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "request"
    kind, rest = loc[0], [str(p) for p in loc[1:]]
    names = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body"}
    if kind == "body" and not rest:
        return "request body"
    label = names.get(str(kind), str(kind))
    return f"{label} {'.'.join(rest)!r}" if rest else label


def validation_detail(errors: list[dict[str, Any]]) -> str:
    """Pydantic's error list as one readable line: where, what, and the value that was sent."""
    parts = []
    for err in errors[:3]:
        msg = str(err.get("msg", "invalid")).rstrip(".")
        if err.get("type") == "json_invalid":
            parts.append("request body is not valid JSON")
            continue
        part = f"{_where(tuple(err.get('loc', ())))}: {msg}"
        value = err.get("input")
        if isinstance(value, str | int | float) and not isinstance(value, bool) and len(str(value)) <= 60:
            part += f" (got {value!r})"
        parts.append(part)
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more + "; fix the request (GET /openapi.json has the schema) and send it again"


def _flat(routes: list[Any]) -> Any:
    """Routes, with those of included routers (FastAPI keeps them inside one wrapper) taken out."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def allowed_methods(request: Request) -> str:
    """Every method some route answers on this path (Starlette's 405 names only the first route's)."""
    from starlette.routing import Match

    exact: set[str] = set()
    catch_all: set[str] = set()  # {name:path} routes: they match a sub-route's path too
    for route in _flat(request.app.router.routes):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            (catch_all if getattr(route, "path", "").endswith(":path}") else exact).update(route.methods)
    return ", ".join(sorted(exact or catch_all))


def install(app: FastAPI) -> None:
    """Register the problem+json handlers and the catch-all middleware on ``app``."""

    @app.exception_handler(AgentError)
    async def _agent_error(request: Request, err: AgentError) -> JSONResponse:
        if err.status >= 500 and is_disk_full(err):
            return disk_full(request.scope)
        if err.status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, err)
        return problem(err.status, str(err), instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if err.status_code == 404 and err.detail == "Not Found":
            detail = f"no route {request.method} {path} on this agent; GET /openapi.json lists the routes"
        elif err.status_code == 405:
            allowed = allowed_methods(request) or (err.headers or {}).get("Allow") or "?"
            err.headers = {**(err.headers or {}), "Allow": allowed}
            detail = f"{request.method} is not allowed on {path}; allowed: {allowed}"
        else:
            detail = str(err.detail)
        return problem(err.status_code, detail, instance=path, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return problem(422, validation_detail(list(err.errors())), instance=request.url.path)

    app.add_middleware(CatchAll)


def disk_full(scope: Scope) -> JSONResponse:
    """507 Insufficient Storage: what is full and what to delete (one warning, not a traceback)."""
    service = scope["app"].state.service
    detail = full_detail(service.home.root)
    log.warning("%s %s refused: %s", scope.get("method"), scope.get("path"), detail)
    return problem(507, detail, instance=scope.get("path"))


class CatchAll:
    """Outermost guard: an exception nothing else handled becomes a 500 problem, logged once here.

    A pure ASGI middleware (not BaseHTTPMiddleware) so SSE streams pass through untouched. When the
    response has already started (an SSE stream died mid-way) the connection is just closed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as err:  # noqa: BLE001 - the point of this middleware
            if is_disk_full(err):
                if not started:
                    await disk_full(scope)(scope, receive, send)
                return
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await problem(500, INTERNAL_DETAIL, instance=scope.get("path"))(scope, receive, send)
