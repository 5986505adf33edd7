"""The lost-link banner offers SSH for a device paired over SSH: ``o`` reads the status and log tail
through the real SSH test server running the real agent CLI, while HTTP stays unreachable."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord, SSHEndpoint
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.widgets.banner import LinkBanner
from tests.ssh_server import SSHTestServer

SIZE = (120, 40)


async def until(pilot: Pilot, what: str, check: Callable[[], bool], timeout: float = 45.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await pilot.pause(0.05)


@pytest.fixture
def ssh_server(tmp_path: Path, agent_home: Path):
    server = SSHTestServer(tmp_path, agent_home).start()
    yield server
    server.stop()


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_banner_offers_ssh_and_o_reads_the_status_over_it(
    start_agent, agent_home, ssh_server, tmp_path, monkeypatch
):
    agent = start_agent(agent_home)
    monkeypatch.setenv("FIELDTUI_SSH_DIR", str(ssh_server.write_client_dir(tmp_path / "dot-ssh", "dock-1")))
    monkeypatch.setattr(DashboardScreen, "RETRY_INITIAL_S", 30.0)
    config = ConsoleConfig(tmp_path / "console")
    record = DeviceRecord(
        name="dock-1", host="127.0.0.1", port=_closed_port(), origin=["ssh"], ssh=SSHEndpoint(host="dock-1")
    )
    config.save_device(record, agent.token)
    app = FieldtuiApp(Fleet(config, mdns=False), open_device=record)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        banner = dash.query_one(LinkBanner)
        await until(pilot, "the banner", lambda: banner.has_class("-shown"))
        assert "press o to look over SSH" in str(banner.render())
        await pilot.press("o")
        await until(pilot, "the status over SSH", lambda: dash.status is not None)
        with agent.client() as c:  # the same device its HTTP API describes
            assert dash.device.id == c.get("/v1/device").json()["id"]
        assert dash.status.state in ("running", "starting") and dash.status.model.path.endswith("tiny.onnx")
        await until(pilot, "the banner's SSH line", lambda: "over SSH: agent" in str(banner.render()))
        assert not dash.link_up  # HTTP is still down: the banner stays
    assert app._exception is None
