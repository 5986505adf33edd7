"""sd_notify over a real AF_UNIX datagram socket: the module alone, then a served agent end to end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.server import sdnotify
from agent.server.sdnotify import Notifier, PipelineLiveness, watchdog_interval


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket standing in for systemd's notify socket (short path: sun_path <= 107)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sdn") as d:
        path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(30.0)
        try:
            yield path, sock
        finally:
            sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_notifier_sends_each_message_as_one_datagram(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("serving on http://127.0.0.1:8470")
    assert recv(sock) == ["READY=1", "STATUS=serving on http://127.0.0.1:8470"]
    assert n.status("model v3")
    assert recv(sock) == ["STATUS=model v3"]
    assert n.watchdog()
    assert recv(sock) == ["WATCHDOG=1"]
    assert n.stopping()
    assert recv(sock) == ["STOPPING=1"]


@pytest.mark.skipif(sys.platform != "linux", reason="the abstract socket namespace is Linux-only")
def test_abstract_namespace_socket() -> None:
    name = f"fieldtui-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10.0)
        assert Notifier(f"@{name}").ready()
        assert recv(sock) == ["READY=1"]


def test_without_systemd_every_call_is_a_quiet_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready("x") is False
    assert n.watchdog() is False


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "gone"))
    assert n.ready() is False
    assert "sd_notify" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


class _Frames:
    """Just the Pipeline surface PipelineLiveness reads, to drive its decision table with a fixed clock."""

    def __init__(self) -> None:
        self.running, self.state, self.frames_total = True, "running", 0

    def sample(self) -> _Frames:
        return self


def test_liveness_fails_only_when_a_running_pipeline_stops_making_progress() -> None:
    now = [0.0]
    p = _Frames()
    live = PipelineLiveness(p, stall_s=60.0, clock=lambda: now[0])
    assert live.alive()
    for t, frames in ((30.0, 10), (80.0, 20)):
        now[0], p.frames_total = t, frames
        assert live.alive()
    now[0] = 139.0
    assert live.alive()  # 59 s without a frame
    now[0] = 141.0
    assert not live.alive()  # 61 s: wedged
    p.frames_total = 21
    assert live.alive()  # moving again
    for state, running in (("reconnecting", True), ("failed", True), ("stopped", False), ("failed", False)):
        p.state, p.running = state, running
        now[0] += 1000.0
        assert live.alive(), (state, running)  # a lost camera or a stopped pipeline is not a hang


async def test_watchdog_task_pings_only_while_alive(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    sock.settimeout(0.5)
    alive = [True]
    task = asyncio.create_task(sdnotify._ping_forever(Notifier(path), lambda: alive[0], 0.01))
    try:
        got = await asyncio.to_thread(recv, sock)
        assert got == ["WATCHDOG=1"]
        alive[0] = False
        await asyncio.sleep(0.05)  # a ping sent before the switch may still be queued: drain it
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.recv(4096)
        sock.settimeout(0.5)  # 50 intervals: a task still pinging would be heard
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(sock.recv, 4096)
        alive[0] = True
        assert await asyncio.to_thread(recv, sock) == ["WATCHDOG=1"]
    finally:
        task.cancel()


def test_served_agent_sends_ready_watchdog_and_stopping(
    start_agent: Callable[..., object], listener: tuple[str, socket.socket]
) -> None:
    path, sock = listener
    agent = start_agent(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    first = recv(sock)
    assert first[0] == "READY=1"
    assert first[1].startswith("STATUS=serving on http://127.0.0.1:")
    assert recv(sock) == ["WATCHDOG=1"]
    assert agent.stop() == 0  # type: ignore[attr-defined]
    seen = []
    while "STOPPING=1" not in seen:
        seen = recv(sock)
        assert seen in (["WATCHDOG=1"], ["STOPPING=1", "STATUS=shutting down"])
