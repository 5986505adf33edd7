"""A device paired over SSH whose HTTP API is out of reach: the dashboard reads its status through the
real SSH test server running the real agent CLI, again every few seconds, feeds the charts with it and
says it is polled over SSH; ``o`` reads at once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord, SSHEndpoint
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.widgets.banner import LinkBanner
from tests.ssh_server import SSHTestServer
from tests.tui_pilot import SIZE, until


@pytest.fixture
def ssh_server(tmp_path: Path, agent_home: Path):
    server = SSHTestServer(tmp_path, agent_home).start()
    yield server
    server.stop()


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_dashboard_is_polled_over_ssh_while_http_is_down(
    start_agent, agent_home, ssh_server, tmp_path, monkeypatch
):
    agent = start_agent(agent_home)
    monkeypatch.setenv("FIELDTUI_SSH_DIR", str(ssh_server.write_client_dir(tmp_path / "dot-ssh", "dock-1")))
    monkeypatch.setattr(DashboardScreen, "RETRY_INITIAL_S", 30.0)
    monkeypatch.setattr(DashboardScreen, "RETRY_MAX_S", 30.0)
    monkeypatch.setattr(DashboardScreen, "SSH_POLL_S", 0.5)
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
        await until(pilot, "the status over SSH", lambda: dash.status is not None)
        with agent.client() as c:  # the same device its HTTP API describes
            assert dash.device.id == c.get("/v1/device").json()["id"]
        assert dash.status.state in ("running", "starting") and dash.status.model.path.endswith("tiny.onnx")
        # Read again and again: the sample of each read goes to the charts.
        await until(pilot, "three reads over SSH", lambda: dash.ssh_polls >= 3)
        await until(pilot, "two samples on the charts", lambda: dash.telemetry.count >= 2)
        assert dash.rendered_ts is not None
        assert "live over SSH: agent" in str(banner.render())
        assert "SSH · polled every 0.5 s" in str(dash.query_one("#link").render())
        assert not dash.link_up  # HTTP is still down: the banner stays
        polls = dash.ssh_polls
        await pilot.press("o")  # a read now, and the watch goes on
        await until(pilot, "a read after o", lambda: dash.ssh_polls > polls)
    assert app._exception is None
