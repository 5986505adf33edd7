"""``fieldtui-agent serve``: the pipeline, the HTTP control plane and mDNS in one process.

Start-up order: the socket (bound here, first: so ``--port 0`` works, the real port is known, and a port
conflict fails at once); home, token and TLS; model and pipeline; logging (ring buffer + ``agent.log``);
uvicorn; then, once it accepts connections, the runtime file ``agent.json`` and the mDNS advertisement. SIGTERM or SIGINT reverses it:
mDNS goodbyes, SSE streams ended, uvicorn drained, jobs and pipeline stopped and joined, state.db
closed, runtime file removed, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from agent.core.config import AgentConfig
from agent.core.diskspace import is_disk_full
from agent.core.errors import AgentError
from agent.core.logbuf import LogBuffer, RepeatFilter, rotating_file_handler
from agent.frames.sources import redact
from agent.server import sdnotify
from agent.server.auth import load_or_create_token
from agent.server.device import public_url
from agent.server.service import AgentService
from fieldtui.protocol import API_VERSION, HealthReport, ModelInfo, __version__

log = logging.getLogger("fieldtui.agent.server")

ACCEPT_BATCH = 64


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (uvicorn listens on it); AgentError with what to do when it cannot be had."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise AgentError(
            f"cannot bind to host {host!r}: {err.strerror}; use an address of this device or 0.0.0.0"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        # listen now: with SO_REUSEADDR, Linux lets two sockets bind one port as long as neither listens
        sock.listen(ACCEPT_BATCH)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise AgentError(
                f"port {port} on {host} is already in use (another fieldtui-agent?); "
                "stop it or choose another with --port"
            ) from None
        if err.errno == errno.EACCES:
            raise AgentError(
                f"no permission to bind port {port}; use a port above 1023 or run as root"
            ) from None
        raise AgentError(f"cannot bind {host}:{port}: {err.strerror}") from None
    sock.set_inheritable(False)
    return sock


def make_server(service: AgentService, sock: socket.socket) -> Any:
    """A uvicorn server for ``service`` on ``sock``, which ends SSE streams before draining connections
    (open streams would otherwise hold the graceful shutdown until its timeout)."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from agent.server.api import create_app
    from agent.server.connguard import (
        ConnectionCollector,
        ConnectionGuard,
        connection_limit,
        raise_file_limit,
    )

    class AgentServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            service.bus.close()
            await super().shutdown(sockets)

    tls = service.tls
    app = create_app(service)
    # connections bounded below the file limit, idle ones displaced first (agent/server/connguard.py)
    guard = ConnectionGuard(connection_limit(raise_file_limit()))
    service.metrics.registry.register(ConnectionCollector(guard, app.state.in_flight))
    config = uvicorn.Config(
        app,
        http=guard.protocol(AutoHTTPProtocol),
        timeout_keep_alive=5,  # an idle keep-alive connection is closed after this (uvicorn's default)
        # asyncio accepts up to `backlog` connections per wake-up before any is looked at: keep that
        # batch small, so a queued flood cannot reach the file limit between two checks of the guard
        backlog=ACCEPT_BATCH,
        log_config=None,  # ours: the root logger with the ring buffer and agent.log
        access_log=False,  # a line per /metrics scrape and status poll would drown what matters
        lifespan="on",
        timeout_graceful_shutdown=5,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        server_header=False,
    )
    return AgentServer(config)


def install_logging(config: AgentConfig) -> tuple[LogBuffer, Callable[[], None]]:
    """Send every log record to a ring buffer (/v1/logs, SSE ``log``) and ``agent.log``, both redacted
    of the home's token; returns the buffer and the undo."""
    home = config.agent_home.ensure()
    token = load_or_create_token(home)
    ring = LogBuffer(secrets=lambda: (token,))
    root = logging.getLogger()
    handlers = [ring, rotating_file_handler(home.log_file, lambda: (token,))]
    repeats = RepeatFilter()  # a fault repeating thousands of times a second: 20 lines a minute
    for handler in handlers:
        handler.setLevel(config.log_level)
        handler.addFilter(repeats)
        root.addHandler(handler)
    old_level = root.level
    root.setLevel(min(root.level or logging.WARNING, logging.getLevelName(config.log_level)))

    def undo() -> None:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(old_level)

    return ring, undo


class _Stop:
    """SIGTERM/SIGINT before, during and after uvicorn: ask the server to exit, never die mid-write.

    uvicorn installs its own handlers while it serves and, on the way out, restores ours and re-raises
    the signal it caught; ours then only records it, so the process still exits 0 after a clean stop.
    """

    def __init__(self) -> None:
        self.requested = False
        self.server: Any = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested and self.server is None:  # once uvicorn runs, it says so itself
            log.info("%s received: shutting down", signal.Signals(signum).name)
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def serve(config: AgentConfig) -> int:
    """Run the agent until SIGTERM/SIGINT; 0 after a clean shutdown."""
    with _Stop() as stop:
        # the port first: a second agent on the same port fails in a blink, before loading a model
        sock = bind_socket(config.host, config.port)
        try:
            ring, undo_logging = install_logging(config)
        except BaseException:
            sock.close()
            raise
        try:
            log.info(
                "fieldtui-agent %s starting as %s, source %s, model %s",
                __version__,
                config.name,
                redact(config.source),
                config.model or "(embedded demo model)",
            )
            service = AgentService.create(config, logs=ring)
        except BaseException:
            sock.close()
            undo_logging()
            raise
        try:
            if not stop.requested:
                service.start()
            if not stop.requested:
                asyncio.run(_serve(service, config, sock, stop))
        finally:
            sock.close()
            service.close()
            service.home.remove_runtime()
            log.info("fieldtui-agent stopped")
            undo_logging()
    return 0


async def _serve(service: AgentService, config: AgentConfig, sock: socket.socket, stop: _Stop) -> None:
    host, port = sock.getsockname()[:2]
    service.api_url = public_url(config.host, port, service.tls is not None)
    server = make_server(service, sock)
    stop.server = server
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if serving.done():  # start-up failed: re-raise its error, if any
        await serving
        return
    if stop.requested:
        server.should_exit = True
    try:
        service.home.write_runtime(
            {
                "pid": os.getpid(),
                "api_url": service.api_url,
                "host": host,
                "port": port,
                "tls_fingerprint": service.tls.fingerprint if service.tls else None,
                "started": time.time(),
            }
        )
    except OSError as err:  # a full disk must not keep the API down: serve without the runtime file
        if not is_disk_full(err):
            raise
        log.warning(
            "agent.json not written (the disk is full); the API serves on %s all the same", service.api_url
        )
    wildcard = config.host in ("0.0.0.0", "", "::")
    log.info("listening on %s%s", service.api_url, f" (bound to {host}:{port})" if wildcard else "")
    advertiser = await _advertise(service, config, port) if config.mdns else None
    systemd = sdnotify.announce_ready(service.pipeline, f"serving on {service.api_url}")
    try:
        await serving
    finally:
        systemd.stopping()
        if advertiser is not None:
            await advertiser.stop()
        service.home.remove_runtime()


async def _advertise(service: AgentService, config: AgentConfig, port: int) -> Any:
    from agent.server.mdns import Advertiser

    info = getattr(service.pipeline.detector, "info", None)
    advertiser = Advertiser(
        name=config.name,
        device_id=service.device_id,
        port=port,
        host=config.host,
        interfaces=config.mdns_interfaces,
        txt={
            "id": service.device_id,
            "ver": __version__,
            "api": API_VERSION,
            "model": service.model_label(),
            "backend": info.backend if info is not None else config.backend,
            "tls": service.tls.fingerprint if service.tls else "0",
            "health": service.health().status,
        },
    )
    await advertiser.start()
    loop = asyncio.get_running_loop()

    def on_model(new: ModelInfo) -> None:
        # called from whatever thread swapped the model; the advertiser lives on the loop
        fields = {
            "model": new.version or os.path.splitext(os.path.basename(new.path))[0],
            "backend": new.backend,
        }
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(advertiser.update(fields), loop)

    def on_health(report: HealthReport) -> None:  # the verdict's level only: a short, stable TXT entry
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(advertiser.update({"health": report.status}), loop)

    service.model_listeners.append(on_model)
    service.health_listeners.append(on_health)
    return advertiser
