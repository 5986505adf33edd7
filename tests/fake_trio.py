"""A fake Trio API on 127.0.0.1: a real HTTP server (stdlib, one thread per connection) that answers as
told and records every request with its arrival time.

    with FakeTrio() as trio:                    # trio.url = http://127.0.0.1:PORT/api
        trio.reply(ok(triggered=True))          # every request from now on
        trio.reply(rate_limited(2), then=ok())  # the first request, then the rest
        trio.reply(hang())                      # hold the request until the server closes
        trio.reply(close())                     # drop the connection without an answer

Replies: :func:`ok`, :func:`trio_error` (Trio's ``{"error": {code, message, remediation}}`` body),
:func:`rate_limited` (429 with Retry-After), :func:`hang`, :func:`close`, :func:`raw`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

HANG_CAP_S = 120.0  # a hung request is released at close(), or after this, whichever comes first


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: Literal["reply", "hang", "close"] = "reply"


@dataclass
class Recorded:
    ts: float  # time.monotonic() when the request was read
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})})


def ok(
    triggered: bool = False,
    explanation: str = "a circle rolls past; nothing unusual",
    latency_ms: float = 412.0,
) -> Reply:
    return _json(200, {"triggered": triggered, "explanation": explanation, "latency_ms": latency_ms})


def trio_error(status: int, code: str, message: str, remediation: str | None = None, **headers: str) -> Reply:
    err = {"code": code, "message": message}
    if remediation is not None:
        err["remediation"] = remediation
    return _json(status, {"error": err}, headers)


def rate_limited(retry_after: float | str) -> Reply:
    return trio_error(429, "RATE_LIMITED", "too many requests", **{"Retry-After": str(retry_after)})


def hang() -> Reply:
    return Reply(action="hang")


def close() -> Reply:
    return Reply(action="close")


def raw(status: int, body: bytes = b"", content_type: str = "text/plain") -> Reply:
    return Reply(status, body, {"Content-Type": content_type})


class FakeTrio:
    """See the module docstring. ``requests`` holds every request received, oldest first."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: list[Reply] = []
        self._default = ok()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-trio", daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api"

    def __enter__(self) -> FakeTrio:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._release.set()  # hung handlers return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def reply(self, first: Reply, *more: Reply, then: Reply | None = None) -> None:
        """Answer with ``first`` (and ``more``) in turn, then ``then``; without ``then`` the last given
        one is the answer to every later request."""
        with self._lock:
            if then is None:
                self._script, self._default = [first, *more][:-1], [first, *more][-1]
            else:
                self._script, self._default = [first, *more], then

    def _next(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if self._script else self._default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet: the test output is for assertions
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.requests.append(
                        Recorded(time.monotonic(), "POST", self.path, dict(self.headers.items()), body)
                    )
                reply = fake._next()
                if reply.action == "hang":
                    fake._release.wait(HANG_CAP_S)
                    self.close_connection = True
                    return
                if reply.action == "close":
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        return Handler
