"""Bearer-token check for every route but the public ones, with the failure brake of agent/server/auth.py.

A middleware rather than a per-route dependency: a route added later (models, benchmarks, ...) is
protected without anyone remembering to, and an unknown path or method asked without a token gets 401,
not a map of which routes exist.

Public: ``GET /v1/health`` (load balancers, the console's reachability probe) and ``GET /metrics``
(Prometheus scrapes without secrets). The OpenAPI document is protected like the rest - the design
says "everything except health and metrics" and it describes the whole control surface; with the token
it is one ``curl -H "Authorization: Bearer $(fieldtui-agent token --quiet)" .../openapi.json`` away.
The interactive /docs pages are off: a browser could not send the bearer header anyway.
"""

from __future__ import annotations

import asyncio
import logging
import math

from starlette.types import ASGIApp, Receive, Scope, Send

from agent.server.api.problems import problem
from agent.server.auth import FailureThrottle, bearer_token, token_matches

log = logging.getLogger("fieldtui.agent.auth")

PUBLIC_ROUTES = frozenset({("GET", "/v1/health"), ("GET", "/metrics")})

_HOW = "read it on the device with `fieldtui-agent token` (or pair again with `fieldtui pair`)"


def is_public(method: str, path: str) -> bool:
    return (method if method != "HEAD" else "GET", path.rstrip("/") or "/") in PUBLIC_ROUTES


class BearerAuth:
    """Pure ASGI middleware (SSE streams pass straight through once a request is let in)."""

    def __init__(self, app: ASGIApp, *, token: str, throttle: FailureThrottle) -> None:
        self.app = app
        self.token = token
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.retry_after(client)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            response = problem(
                429,
                f"too many failed token attempts from {client}; wait {seconds} s, then retry with the "
                f"right token ({_HOW})",
                instance=scope["path"],
                headers={"Retry-After": str(seconds)},
            )
            await response(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        presented = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if token_matches(self.token, presented):
            self.throttle.success(client)
            await self.app(scope, receive, send)
            return
        delay, count = self.throttle.failure(client)
        level = logging.WARNING if count in (1, self.throttle.policy.free + 1) else logging.DEBUG
        log.log(
            level,
            "refused %s %s from %s: %s token (%d failure(s) in the last %.0f s%s)",
            scope["method"],
            scope["path"],
            client,
            "missing" if presented is None else "wrong",
            count,
            self.throttle.policy.window,
            ", slowing down" if delay else "",
        )
        if delay:
            await asyncio.sleep(delay)  # this request only; the event loop serves everyone else
        if presented is None:
            detail = f"this route needs `Authorization: Bearer <token>`; {_HOW}"
            challenge = 'Bearer realm="fieldtui-agent"'
        else:
            detail = (
                f"the token does not match this agent's (it changes when the agent home is reset); {_HOW}"
            )
            challenge = 'Bearer realm="fieldtui-agent", error="invalid_token"'
        response = problem(401, detail, instance=scope["path"], headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)
