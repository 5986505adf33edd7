"""Layout of the benchmark and engines screens, as SVG snapshots: fixed size, clock, time zone and data
(canned runs and engines from tests/tui_fakes_jobs.py). Look at the SVGs before committing them."""

from __future__ import annotations

from textual.pilot import Pilot

from tests.test_tui_snapshots import SIZE, _app, _dashboard_settled, _fleet, until, utc  # noqa: F401
from tests.tui_fakes_jobs import BACKENDS, benchmark_list


def _bench_fleet():
    fleet = _fleet()
    agent = fleet.agents["gate-3"]
    agent.info = agent.info.model_copy(update={"backends": BACKENDS})
    agent.benchmarks_doc = benchmark_list()
    return fleet


def test_benchmark(snap_compare):
    from screens.benchmark import BenchmarkScreen

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: _dashboard_settled(pilot))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(pilot.app.screen, BenchmarkScreen))
        screen = pilot.app.screen
        await until(
            pilot,
            lambda: (
                screen.device is not None
                and screen.shown is not None
                and screen.query_one("#history").row_count == 2
            ),
        )

    fleet = _bench_fleet()
    assert snap_compare(_app(fleet, open_device=fleet.records[0]), terminal_size=SIZE, run_before=run_before)


def _engines_fleet():
    from tests.tui_fakes_jobs import engine_list, rebuild_result

    fleet = _fleet()
    agent = fleet.agents["gate-3"]
    agent.engines_doc = engine_list()
    agent.rebuild_doc = rebuild_result()
    return fleet


async def _open_engines(pilot: Pilot):
    from screens.engines import EnginesScreen

    await until(pilot, lambda: _dashboard_settled(pilot))
    await pilot.press("e")
    await until(pilot, lambda: isinstance(pilot.app.screen, EnginesScreen))
    screen = pilot.app.screen
    await until(pilot, lambda: screen.listing is not None)
    return screen


def test_engines_after_a_rebuild(snap_compare):
    async def run_before(pilot: Pilot) -> None:
        screen = await _open_engines(pilot)
        await pilot.press("down", "down")  # the stale TensorRT plan: its reason shows under the table
        await pilot.press("up", "up", "r")  # a rebuild like the INT8 engine, without activation
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "RebuildDialog")
        await pilot.press("enter")
        await until(pilot, lambda: screen.result is not None)
        await pilot.press("down", "down")

    fleet = _engines_fleet()
    assert snap_compare(_app(fleet, open_device=fleet.records[0]), terminal_size=SIZE, run_before=run_before)


def test_rebuild_dialog(snap_compare):
    async def run_before(pilot: Pilot) -> None:
        await _open_engines(pilot)
        await pilot.press("r")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "RebuildDialog")

    fleet = _engines_fleet()
    assert snap_compare(_app(fleet, open_device=fleet.records[0]), terminal_size=SIZE, run_before=run_before)


def test_dashboard_polled_over_ssh(snap_compare, monkeypatch):
    """HTTP down, the device paired over SSH: the status read through SSH (canned here: the SSH path
    itself runs against the real SSH test server in test_tui_ssh_banner.py) feeds the charts."""
    from fieldtui.protocol import DeviceStatus, HealthReport, LogPage
    from screens.dashboard import DashboardScreen
    from tests.tui_fakes import FakeAgent, FakeFleet, device_info, log_lines, pipeline_status, samples

    feed = samples(12)
    monkeypatch.setattr(DashboardScreen, "RETRY_INITIAL_S", 30.0)
    monkeypatch.setattr(DashboardScreen, "RETRY_MAX_S", 30.0)

    async def canned_poll(endpoint, every, on_status, on_error, **_):
        health = HealthReport(status="ok", version="0.1.0", uptime_s=7200)
        for i, s in enumerate(feed):
            status = DeviceStatus(device=device_info("dock-1"), health=health, status=pipeline_status(s))
            on_status(status, LogPage(lines=log_lines(5)) if i == 0 else None)
        import asyncio

        await asyncio.Event().wait()

    monkeypatch.setattr("fieldtui.sshwatch.poll_status", canned_poll)
    record = _record_ssh()
    fleet = FakeFleet([(record, FakeAgent(down=True, url=record.api_url))])

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        dash = pilot.app.screen
        await until(pilot, lambda: dash.ssh_polls == len(feed) and dash.rendered_ts == feed[-1].ts)
        pilot.app.clear_notifications()

    assert snap_compare(_app(fleet, open_device=record), terminal_size=SIZE, run_before=run_before)


def _record_ssh():
    from fieldtui.protocol import DeviceRecord, SSHEndpoint

    return DeviceRecord(
        name="dock-1",
        host="10.0.4.30",
        port=8470,
        origin=["ssh"],
        ssh=SSHEndpoint(host="10.0.4.30", user="pi"),
    )
