"""The console against a real agent (subprocess, tiny model, demo camera): Pilot drives the screens.

Waits poll the screen with a generous deadline; nothing here asserts on timing.
"""

from __future__ import annotations

import httpx
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog, Static
from textual.worker import WorkerState

from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.devices import DevicesScreen
from screens.logs import LogsScreen
from screens.widgets.banner import LinkBanner
from screens.widgets.chart import TimeChart
from screens.widgets.halfblock import HalfBlockImage
from tests.tui_pilot import SIZE, until


def _app_for(agent, tmp_path) -> FieldtuiApp:
    host, port = agent.url.removeprefix("http://").rsplit(":", 1)
    config = ConsoleConfig(tmp_path / "console")
    record = DeviceRecord(id=None, name="bench-cam", host=host, port=int(port), origin=["manual"])
    config.save_device(record, agent.token)
    return FieldtuiApp(Fleet(config, mdns=False))


def _cells(app: FieldtuiApp) -> list[str]:
    """The first row's cells of the device list's COLUMNS (not the mark or the tags)."""
    from screens.devices import COLUMNS

    row = dict(zip(app.screen.shown_columns, app.screen.query_one(DataTable).get_row_at(0), strict=True))
    return [str(row[c]) for c in COLUMNS]


def _dashboard(app: FieldtuiApp) -> DashboardScreen:
    screen = app.screen
    assert isinstance(screen, DashboardScreen), screen
    return screen


async def _open_dashboard(app: FieldtuiApp, pilot: Pilot) -> DashboardScreen:
    await until(pilot, "the device row", lambda: app.screen.query_one(DataTable).row_count == 1)
    await pilot.press("enter")
    await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
    return _dashboard(app)


async def test_device_list_shows_the_saved_agent_with_its_fps(agent_proc, tmp_path):
    app = _app_for(agent_proc, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, DevicesScreen)
        await until(pilot, "a probed row with FPS", lambda: _cells(app)[6] not in ("-", ""))
        name, address, link, backend, model, health, fps, p95, seen = _cells(app)
        assert name == "bench-cam" and address == agent_proc.url.removeprefix("http://")
        assert link == "HTTP" and backend == "onnxruntime" and model == "tiny.onnx"
        assert health in ("ok", "degraded") and float(fps) > 0 and float(p95) > 0 and seen.endswith("ago")
    assert app._exception is None


async def test_dashboard_fills_its_charts_camera_and_logs_from_the_live_agent(agent_proc, tmp_path):
    app = _app_for(agent_proc, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        dash = await _open_dashboard(app, pilot)
        await until(pilot, "three samples", lambda: dash.telemetry.count >= 3 and dash.renders > 0)
        fps_chart = dash.query_one("#fps", TimeChart)
        assert fps_chart.points >= 1 and dash.query_one("#latency", TimeChart).points >= 1
        assert dash.telemetry.latest.fps > 0 and "fps" in fps_chart.caption
        assert not fps_chart.caption.startswith("0.0")
        identity = str(dash.query_one("#identity", Static).render())
        assert "tiny.onnx" in identity and "onnxruntime" in identity and "running" in identity
        # The camera view: the agent's annotated snapshot, decoded and drawn in half blocks.
        view = dash.query_one("#camera", HalfBlockImage)
        await until(pilot, "a camera picture", lambda: view.picture is not None)
        assert view.picture.width > 10 and view.picture.height > 10

        await pilot.press("l")
        await until(pilot, "the log screen", lambda: isinstance(app.screen, LogsScreen))
        logs = app.screen
        await until(pilot, "log lines", lambda: len(logs.query_one(RichLog).lines) > 0)
        assert any("pipeline started" in line.message for line in logs.lines)
        await pilot.press("v", "v", "v")  # ERROR and up: the healthy agent logged none
        assert logs.level == "ERROR" and len(logs.query_one(RichLog).lines) == 0
        await pilot.press("escape")
        assert app.screen is dash
    assert app._exception is None


async def test_banner_when_the_agent_stops_and_recovery_when_it_returns(
    agent_proc, start_agent, tmp_path, monkeypatch
):
    monkeypatch.setattr(DashboardScreen, "RETRY_MAX_S", 1.0)  # retry every second while it is down
    app = _app_for(agent_proc, tmp_path)
    port = agent_proc.url.rsplit(":", 1)[1]
    async with app.run_test(size=SIZE) as pilot:
        dash = await _open_dashboard(app, pilot)
        banner = dash.query_one(LinkBanner)
        await until(pilot, "samples", lambda: dash.telemetry.count >= 2)
        assert not banner.display

        agent_proc.stop()  # SIGTERM: the agent shuts down in order
        await until(pilot, "the banner", lambda: banner.display and "retrying in" in str(banner.render()))
        text = str(banner.render())
        assert text.startswith("agent unreachable since ") and not dash.link_up

        start_agent(agent_proc.home, "--port", port)  # same home (same token), same port
        before = dash.telemetry.count
        await until(pilot, "recovery", lambda: not banner.display and dash.telemetry.count > before + 1)
        assert dash.link_up and banner.since is None
    assert app._exception is None


async def test_no_worker_outlives_a_popped_dashboard(agent_proc, tmp_path):
    app = _app_for(agent_proc, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        dash = await _open_dashboard(app, pilot)
        view = dash.query_one("#camera", HalfBlockImage)
        await until(pilot, "streaming", lambda: dash.telemetry.count >= 2 and view.picture is not None)
        workers = [w for w in app.workers if w.node in (dash, view)]  # the camera view runs its own loop
        assert {w.group for w in workers} >= {"link", "camera"}

        await pilot.press("escape")  # pop while samples and snapshots are in flight
        await until(pilot, "the device list", lambda: isinstance(app.screen, DevicesScreen))
        await pilot.pause(2.0)  # several samples' and snapshots' worth of time
        assert all(w.state in (WorkerState.CANCELLED, WorkerState.SUCCESS) for w in workers)
        assert not dash.is_attached
        # The event stream was closed, not leaked: the agent has no subscriber left.
        metrics = httpx.get(agent_proc.url + "/metrics", timeout=5).text
        line = next(x for x in metrics.splitlines() if x.startswith("fieldtui_agent_sse_subscribers "))
        assert float(line.split()[1]) == 0
        await pilot.press("enter")  # and the device opens again, fresh
        await until(pilot, "a second dashboard", lambda: isinstance(app.screen, DashboardScreen))
        assert app.screen is not dash
    assert app._exception is None


async def test_a_refused_token_is_said_once_and_not_retried(agent_inproc, tmp_path):
    agent_inproc.token = "not-the-token"  # saved wrong, as after the device was re-paired elsewhere
    app = _app_for(agent_inproc, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        dash = await _open_dashboard(app, pilot)
        banner = dash.query_one(LinkBanner)
        await until(pilot, "the refusal", lambda: banner.has_class("-refused"))
        assert "not retrying" in str(banner.render()) and "token" in str(banner.render())
        link = [w for w in app.workers if w.node is dash and w.group == "link"]
        await until(pilot, "the link worker to end", lambda: all(w.is_finished for w in link))
        assert not dash.link_up and dash.telemetry.count == 0
    assert app._exception is None
