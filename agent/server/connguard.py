"""Bounds on connections and requests, so a socket flood cannot take the control plane down.

Every accepted connection holds a file descriptor; a flood of idle ones used to exhaust the file limit,
after which accept() failed in a loop (a log line each time) and /v1/health, /v1/status and /metrics
timed out. Here, at accept time (:class:`ConnectionGuard`, wrapped around uvicorn's HTTP protocol):

- at most ``max_connections`` open, well below the file limit: a new one beyond it displaces the oldest
  *idle* connection (no request in flight), so a flood of idle sockets cannot lock anyone out; with
  none idle the new one is closed at once;
- at most ``per_address`` from one address (same rule within that address);
- a connection that sends no request within ``header_timeout_s`` is closed (uvicorn's keep-alive
  timeout covers the time after a response).

And per request (:class:`RequestLimit`, an ASGI middleware): at most ``max_requests`` protected requests
in flight, beyond that 503 with Retry-After; ``GET /v1/health`` and ``GET /metrics`` are never counted,
so monitoring keeps answering while the API is saturated.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("fieldtui.agent.connections")

RESERVED_FDS = 200  # model files, state.db, the camera, engine builds, logs: never given to clients
MAX_CONNECTIONS = 1000
PER_ADDRESS = 64
HEADER_TIMEOUT_S = 10.0
MAX_REQUESTS = 64


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (systemd's unit sets the hard one); the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(file_limit: int) -> int:
    """Connections allowed for a file limit: below it by RESERVED_FDS, at most MAX_CONNECTIONS."""
    return max(16, min(MAX_CONNECTIONS, file_limit - RESERVED_FDS))


def _idle(protocol: Any) -> bool:
    cycle = getattr(protocol, "cycle", None)
    return cycle is None or cycle.response_complete


class ConnectionGuard:
    """See the module docstring; :meth:`protocol` makes the uvicorn protocol class that enforces it."""

    def __init__(
        self,
        max_connections: int,
        *,
        per_address: int = PER_ADDRESS,
        header_timeout_s: float = HEADER_TIMEOUT_S,
    ) -> None:
        self.max_connections = max_connections
        self.per_address = per_address
        self.header_timeout_s = header_timeout_s
        self._open: dict[Any, str] = {}  # protocol -> address, oldest first
        self._per: Counter[str] = Counter()
        self.closed = Counter({"displaced": 0, "refused": 0, "header_timeout": 0})
        self._said = 0.0

    @property
    def open_count(self) -> int:
        return len(self._open)

    def protocol(self, base: type) -> type:
        guard = self

        class Guarded(base):  # type: ignore[valid-type, misc]
            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                guard.admit(self, transport)

            def connection_lost(self, exc: Exception | None) -> None:
                guard.forget(self)
                super().connection_lost(exc)

        Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
        return Guarded

    def admit(self, protocol: Any, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else "unknown"
        if self._per[address] >= self.per_address and not self._displace(address):
            self._refuse(transport, f"more than {self.per_address} connections from {address}")
            return
        if len(self._open) >= self.max_connections and not self._displace(None):
            self._refuse(transport, f"{self.max_connections} connections open, none idle")
            return
        self._open[protocol] = address
        self._per[address] += 1
        loop = asyncio.get_running_loop()
        loop.call_later(self.header_timeout_s, self._check_started, protocol, transport)

    def forget(self, protocol: Any) -> None:
        address = self._open.pop(protocol, None)
        if address is not None:
            self._per[address] -= 1
            if self._per[address] <= 0:
                del self._per[address]

    def _displace(self, address: str | None) -> bool:
        """Close the oldest idle connection (of ``address``, or of anyone); False when none is idle."""
        for protocol, addr in self._open.items():
            if (address is None or addr == address) and _idle(protocol):
                self.forget(protocol)
                protocol.transport.close()
                self.closed["displaced"] += 1
                return True
        return False

    def _refuse(self, transport: asyncio.Transport, why: str) -> None:
        transport.abort()
        self.closed["refused"] += 1
        now = time.monotonic()
        if now - self._said >= 60.0:  # one line a minute, however hard the flood
            self._said = now
            log.warning("connection refused: %s (%d refused so far)", why, self.closed["refused"])

    def _check_started(self, protocol: Any, transport: asyncio.Transport) -> None:
        if protocol in self._open and getattr(protocol, "cycle", None) is None:
            self.forget(protocol)
            transport.close()
            self.closed["header_timeout"] += 1


class ConnectionCollector(Collector):
    """``fieldtui_agent_http_connections`` (open) and ``..._closed_total{reason}`` at scrape time."""

    def __init__(self, guard: ConnectionGuard, in_flight: InFlight) -> None:
        self._guard = guard
        self._in_flight = in_flight

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "fieldtui_agent_http_connections", "open HTTP connections", value=self._guard.open_count
        )
        closed = CounterMetricFamily(
            "fieldtui_agent_http_connections_closed",
            "connections the agent closed to stay within its limits, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(self._guard.closed.items()):
            closed.add_metric([reason], n)
        yield closed
        yield CounterMetricFamily(
            "fieldtui_agent_http_requests_shed",
            "requests answered 503 because too many were in flight",
            value=self._in_flight.shed,
        )


class InFlight:
    """The count :class:`RequestLimit` keeps (shared with the metrics collector)."""

    def __init__(self, max_requests: int = MAX_REQUESTS) -> None:
        self.max_requests = max_requests
        self.now = 0
        self.shed = 0


class RequestLimit:
    """At most ``max_requests`` requests in flight but for the public monitoring routes and SSE streams
    (module docstring). Inside the bearer check, so requests without the token cannot fill it."""

    def __init__(self, app: ASGIApp, *, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from agent.server.api.problems import problem
        from agent.server.api.security import is_public

        # public monitoring routes and SSE streams (open for as long as someone watches) are not counted
        if (
            scope["type"] != "http"
            or is_public(scope["method"], scope["path"])
            or scope["path"] == "/v1/events"
        ):
            await self.app(scope, receive, send)
            return
        count = self.in_flight
        if count.now >= count.max_requests:
            count.shed += 1
            response = problem(
                503,
                f"{count.max_requests} requests are in flight on this agent; retry in a second",
                instance=scope["path"],
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        count.now += 1
        try:
            await self.app(scope, receive, send)
        finally:
            count.now -= 1
