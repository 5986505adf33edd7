"""A socket flood against a real agent subprocess on loopback (agent/server/connguard.py).

The agent runs with its file limit lowered to 512 (so 1,100 idle sockets are more than it could ever
hold, and the test stays cheap). Idle sockets from one address, then from forty, must not stop
``/v1/health``, ``/metrics`` and ``/v1/status`` from answering, nor fill the log.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.server.connguard import PER_ADDRESS
from tests.conftest import REPO, _clean_env, _terminate, wait_for_runtime

FILE_LIMIT = 512
FLOOD = 1100


@pytest.fixture
def small_agent(tmp_path: Path, tiny_model: Path) -> Iterator[tuple[str, str, Path, subprocess.Popen]]:
    home = tmp_path / "home"

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))

    args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
    args += ["--port", "0", "--no-mdns", "--source", "demo:", "--model", str(tiny_model)]
    stderr_path = tmp_path / "agent.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=_clean_env(None),
            cwd=REPO,
            preexec_fn=lower_limit,
        )
    try:
        info = wait_for_runtime(home, proc, stderr_path)
        yield info["api_url"], (home / "token").read_text().strip(), stderr_path, proc
    finally:
        _terminate(proc)


@pytest.fixture
def file_limit_for_the_flood() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD * 2 + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the test process may open only {hard} files; the flood needs {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def flood(port: int, addresses: list[str], per_address: int) -> list[socket.socket]:
    """Idle TCP connections to the agent from each of ``addresses`` (loopback aliases); they send nothing."""
    socks = []
    for address in addresses:
        for _ in range(per_address):
            s = socket.socket()
            s.setblocking(False)
            s.bind((address, 0))
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError, OSError):
                s.connect(("127.0.0.1", port))
            socks.append(s)
    return socks


def assert_answers(url: str, token: str) -> None:
    with httpx.Client(base_url=url, timeout=5.0) as c:
        for _ in range(3):  # a fresh connection each time: the one a flood would lock out
            assert c.get("/v1/health", headers={"Connection": "close"}).status_code == 200
            assert c.get("/metrics", headers={"Connection": "close"}).status_code == 200
            status = c.get("/v1/status", headers={"Authorization": f"Bearer {token}", "Connection": "close"})
            assert status.status_code == 200, status.text


def test_idle_sockets_do_not_take_the_api_down(small_agent, file_limit_for_the_flood) -> None:
    url, token, stderr_path, proc = small_agent
    port = int(url.rsplit(":", 1)[1])
    lines_before = len(stderr_path.read_text().splitlines())

    one = flood(port, ["127.0.0.2"], FLOOD)  # all from one address: the per-address cap
    try:
        time.sleep(1.0)
        assert_answers(url, token)
    finally:
        for s in one:
            s.close()

    many = flood(port, [f"127.0.0.{i}" for i in range(10, 50)], FLOOD // 40 + 1)  # forty addresses
    try:
        time.sleep(1.0)
        assert_answers(url, token)
        metrics = httpx.get(url + "/metrics", timeout=5).text
    finally:
        for s in many:
            s.close()

    assert proc.poll() is None
    closed = {
        line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("fieldtui_agent_http_connections_closed_total{")
    }
    # the flood met the limits (the kernel's short accept queue turned the rest away before the agent)
    assert closed["refused"] + closed["displaced"] > 2 * PER_ADDRESS, closed
    text = stderr_path.read_text()
    assert "out of system resource" not in text and "Too many open files" not in text
    new_lines = len(text.splitlines()) - lines_before
    assert new_lines < 20, text[-3000:]  # one warning a minute, not one per socket


def test_requests_in_flight_are_capped_but_health_and_metrics_are_not() -> None:
    import asyncio

    from agent.server.connguard import InFlight, RequestLimit

    async def run() -> list[int]:
        gate = asyncio.Event()

        async def app(scope, receive, send) -> None:
            if scope["path"] not in ("/v1/health", "/metrics"):
                await gate.wait()  # a slow request holding its slot
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        count = InFlight(max_requests=2)
        transport = httpx.ASGITransport(RequestLimit(app, in_flight=count))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as c:
            slow = [asyncio.create_task(c.get("/v1/status")) for _ in range(2)]
            await asyncio.sleep(0.05)
            shed = await c.get("/v1/status")
            health, metrics = await c.get("/v1/health"), await c.get("/metrics")
            gate.set()
            done = [r.status_code for r in await asyncio.gather(*slow)]
            after = await c.get("/v1/status")
        assert shed.headers["Retry-After"] == "1" and "in flight" in shed.json()["detail"]
        assert count.shed == 1 and count.now == 0
        return [shed.status_code, health.status_code, metrics.status_code, *done, after.status_code]

    assert asyncio.run(run()) == [503, 200, 200, 200, 200, 200]


def test_a_repeating_log_line_is_cut_to_a_few_a_minute() -> None:
    import logging

    from agent.core.logbuf import LogBuffer, RepeatFilter

    ring = LogBuffer()
    ring.addFilter(RepeatFilter(burst=5, window=60.0))
    logger = logging.getLogger("test.flood")
    logger.addHandler(ring)
    logger.propagate = False
    try:
        for _ in range(10_000):
            logger.error("socket.accept() out of system resource")
        logger.error("something else")
    finally:
        logger.removeHandler(ring)
        logger.propagate = True
    messages = [line.message for line in ring.query(limit=2000).lines]
    assert messages.count("socket.accept() out of system resource") == 5 and messages[-1] == "something else"
