"""systemd readiness and watchdog notifications (``sd_notify``), with the standard library only.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace)
and, with ``WatchdogSec=``, ``$WATCHDOG_USEC``. The agent sends ``READY=1`` once the API listens and the
pipeline started, ``WATCHDOG=1`` at half the watchdog interval, and ``STOPPING=1`` when it shuts down.
Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so ``serve`` behaves the same everywhere.

The watchdog pings come from a task on the server's event loop and only while the frame path makes
progress: a blocked loop or a wedged pipeline stops the pings and systemd restarts the agent. A pipeline
that is stopped on purpose, could not open its source, or waits for a lost camera is not wedged: the
agent must stay up so a technician can see why over the API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("fieldtui.agent.sdnotify")

STALL_S = 60.0  # a running pipeline that processes no frame for this long is wedged


class Notifier:
    """Sends ``sd_notify`` datagrams to ``socket_path`` (None: every send is a no-op)."""

    def __init__(self, socket_path: str | None) -> None:
        self.socket_path = socket_path or None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False (logged once per call) when it cannot be sent.

        A lost notification must never take the agent down: systemd then times out the start or the
        watchdog, which is the failure it is there to report anyway."""
        if self.socket_path is None:
            return False
        address = self.socket_path
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(assignments).encode(), address)
        except OSError as err:
            log.warning("sd_notify to %s failed: %s", self.socket_path, err.strerror or err)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None without a watchdog
    for this process (unset, unparsable, or ``$WATCHDOG_PID`` naming another process)."""
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a whole number of microseconds", usec)
        return None
    return value / 2_000_000 if value > 0 else None


class PipelineLiveness:
    """``alive()`` is False only when the pipeline's threads run but no frame got through for ``stall_s``.

    Reads the public Pipeline surface (``running``, ``state``, ``sample().frames_total``)."""

    def __init__(
        self, pipeline: Any, *, stall_s: float = STALL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.pipeline = pipeline
        self.stall_s = stall_s
        self._clock = clock
        self._frames = -1
        self._since = clock()

    def alive(self) -> bool:
        now = self._clock()
        p = self.pipeline
        if not p.running or p.state not in ("running", "starting"):
            # stopped, start failed, lost camera reconnecting, errors reported in /v1/health: not a hang
            self._frames, self._since = -1, now
            return True
        frames = p.sample().frames_total
        if frames != self._frames:
            self._frames, self._since = frames, now
            return True
        return now - self._since < self.stall_s


class Lifecycle:
    """What ``serve`` holds between ``READY=1`` and ``STOPPING=1``: the notifier and the watchdog task."""

    def __init__(self, notifier: Notifier, task: asyncio.Task[None] | None) -> None:
        self.notifier = notifier
        self.task = task

    def stopping(self) -> None:
        """Stop the pings and tell systemd the shutdown has begun."""
        if self.task is not None:
            self.task.cancel()
        self.notifier.stopping("shutting down")


def announce_ready(pipeline: Any, status: str, env: Mapping[str, str] | None = None) -> Lifecycle:
    """Send ``READY=1`` with ``status`` and, under a watchdog, start pinging from the running loop.

    Call from the server's event loop once the API accepts connections."""
    notifier = Notifier.from_env(env)
    task = None
    if notifier.enabled:
        notifier.ready(status)
        interval = watchdog_interval(env)
        if interval is not None:
            # a stall window of several pings: one slow frame (a big model on a Pi CPU) is no wedge
            liveness = PipelineLiveness(pipeline, stall_s=max(STALL_S, 4 * interval))
            task = asyncio.get_running_loop().create_task(
                _ping_forever(notifier, liveness.alive, interval), name="sd-watchdog"
            )
    return Lifecycle(notifier, task)


async def _ping_forever(notifier: Notifier, alive: Callable[[], bool], interval: float) -> None:
    wedged = False
    while True:
        try:
            ok = alive()
        except Exception:  # a broken check must look like a hang, not silently keep pinging
            log.exception("watchdog liveness check failed")
            ok = False
        if ok:
            notifier.watchdog()
            if wedged:
                log.info("frame path moving again; watchdog pings resumed")
        elif not wedged:
            log.error(
                "no frame processed for a while: watchdog pings stopped, systemd will restart the agent"
            )
        wedged = not ok
        await asyncio.sleep(interval)
