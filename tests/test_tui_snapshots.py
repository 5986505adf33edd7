"""Layout of every screen, as SVG snapshots: fixed terminal size, clock, time zone and data.

The screens get canned protocol models through the fake services of tests/tui_fakes.py (the service
is swapped, not a socket). Update after a deliberate change with ``pytest --snapshot-update`` and look
at the SVGs before committing them.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.pilot import Pilot

from fieldtui.protocol import DeviceRecord, HealthReport
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.devices import DevicesScreen
from tests.tui_fakes import (
    T0,
    FakeAgent,
    FakeFleet,
    log_lines,
    picture_png,
    pipeline_status,
    samples,
)

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def until(pilot: Pilot, check, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check() and loop.time() < deadline:
        await pilot.pause(0.05)
    assert check(), "the screen never reached the state to photograph"


def _record(name: str, host: str, **kw) -> DeviceRecord:
    return DeviceRecord(name=name, host=host, port=8470, **kw)


def _live_agent(degrade_last: int = 12) -> FakeAgent:
    feed = samples(90, degrade_last=degrade_last)
    health = HealthReport(  # as agent/server/verdict.py words it
        status="degraded",
        reasons=[
            "camera: sharpness down 70%: lens dirty or out of focus?",
            "confidence 0.41 vs 0.88 for last good v6 (the camera finding above may explain it)",
        ],
        version="0.1.0",
        uptime_s=3600,
    )
    return FakeAgent(
        status=pipeline_status(feed[-1]),
        events=[("health", health)] + [("sample", s) for s in feed],
        logs=log_lines(40),
        picture=picture_png(),
    )


def _fleet() -> FakeFleet:
    gate = _record(
        "gate-3", "10.0.4.17", id="3f2a9c1b", origin=["mdns", "saved"], tls=True, tls_fingerprint="ab" * 32
    )
    dock = _record("dock-1", "10.0.4.30", id="77e1", origin=["mdns", "saved"], lost=True, last_seen=T0 - 150)
    yard = _record("yard-2", "10.0.4.41", origin=["manual"])
    return FakeFleet([(gate, _live_agent()), (dock, None), (yard, FakeAgent(down=True, url=yard.api_url))])


def _app(fleet: FakeFleet | None = None, **kw) -> FieldtuiApp:
    return FieldtuiApp(fleet or _fleet(), clock=lambda: T0, **kw)


def _probed(pilot: Pilot) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, DevicesScreen) and all(
        r.probe is not None or r.error is not None for r in screen.rows.values()
    )


def _dashboard_settled(pilot: Pilot) -> bool:
    screen = pilot.app.screen
    return (
        isinstance(screen, DashboardScreen)
        and screen.telemetry.count == 90
        and screen.rendered_ts == screen.telemetry.latest.ts
        and screen.query_one("#camera").picture is not None
    )


def _snap(
    snap_compare, run_before=None, *, fleet: FakeFleet | None = None, device: int | None = None
) -> bool:
    """The app on ``fleet`` (the standard one by default), opened on its ``device``-th record if given,
    photographed at SIZE after ``run_before``."""
    fleet = fleet or _fleet()
    app = _app(fleet) if device is None else _app(fleet, open_device=fleet.records[device])
    return snap_compare(app, terminal_size=SIZE, run_before=run_before)


def _after(ready, then=None):
    """A ``run_before`` that waits until ``ready(pilot)`` (the devices probed, the dashboard settled),
    then runs ``then(pilot)``."""

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: ready(pilot))
        if then is not None:
            await then(pilot)

    return run_before


def test_devices(snap_compare):
    assert _snap(snap_compare, _after(_probed))


def test_devices_empty_with_hints(snap_compare):
    hints = [
        "mDNS found no fieldtui agent on any interface in 3 s.",
        "Multicast blocked? Guest Wi-Fi and client isolation drop mDNS: use the device's address directly.",
    ]
    assert _snap(snap_compare, fleet=FakeFleet([], hints=hints))


def test_add_device_refused_token(snap_compare):
    async def then(pilot: Pilot) -> None:
        await pilot.press("a")
        await pilot.press(*"10.0.4.50", "tab", "tab", *"wrong", "enter", "enter")
        await until(pilot, lambda: "refused" in str(pilot.app.screen.query_one("#error").render()))

    assert _snap(snap_compare, _after(_probed, then))


def test_dashboard(snap_compare):
    assert _snap(snap_compare, _after(_dashboard_settled), device=0)


def test_dashboard_link_lost(snap_compare, monkeypatch):
    monkeypatch.setattr(DashboardScreen, "RETRY_INITIAL_S", 30.0)  # one stable countdown to photograph
    monkeypatch.setattr(DashboardScreen, "RETRY_MAX_S", 30.0)

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        await until(pilot, lambda: pilot.app.screen.query_one("#banner").has_class("-shown"))

    assert _snap(snap_compare, run_before, device=2)


def test_restart_asks_first(snap_compare):
    async def then(pilot: Pilot) -> None:
        await pilot.press("r")

    assert _snap(snap_compare, _after(_dashboard_settled, then), device=0)


def test_logs_warning_and_up(snap_compare):
    async def then(pilot: Pilot) -> None:
        await pilot.press("l")
        await until(pilot, lambda: len(getattr(pilot.app.screen, "lines", ())) == 40)
        await pilot.press("v", "v")

    assert _snap(snap_compare, _after(_dashboard_settled, then), device=0)


def test_help(snap_compare):
    async def then(pilot: Pilot) -> None:
        await pilot.press("question_mark")

    assert _snap(snap_compare, _after(_probed, then))


def _models_open(pilot: Pilot) -> bool:
    from screens.models import ModelsScreen

    screen = pilot.app.screen
    return isinstance(screen, ModelsScreen) and screen.listing is not None


def test_models(snap_compare):
    async def then(pilot: Pilot) -> None:
        await pilot.press("m")
        await until(pilot, lambda: _models_open(pilot))
        await pilot.press("down")  # the cursor on the serving version

    assert _snap(snap_compare, _after(_dashboard_settled, then), device=0)


def test_push_dialog(snap_compare, tmp_path, monkeypatch):
    from screens.push_dialog import ModelTree

    folder = tmp_path / "models"
    for name in ("yolov8n-v9.onnx", "yolov8n-v9.hef", "notes.txt", "calib.npy"):
        (folder / "exports").mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(folder)

    async def then(pilot: Pilot) -> None:
        await pilot.press("m")
        await until(pilot, lambda: _models_open(pilot))
        await pilot.press("p")
        await until(pilot, lambda: len(pilot.app.screen.query(ModelTree)) == 1)
        tree = pilot.app.screen.query_one(ModelTree)
        await until(pilot, lambda: len(tree.root.children) == 3)
        # up from the path field (where the dialog opens) to the tree, then the .onnx file: path and version filled in
        await pilot.press("shift+tab", "down", "down", "down", "enter")

    assert _snap(snap_compare, _after(_dashboard_settled, then), device=0)


def test_trio_with_an_error(snap_compare):
    from screens.trio import TrioScreen

    async def then(pilot: Pilot) -> None:
        await pilot.press("f")
        await until(
            pilot, lambda: isinstance(pilot.app.screen, TrioScreen) and pilot.app.screen.state is not None
        )
        await pilot.press("t")
        await until(pilot, lambda: pilot.app.screen.result is not None)

    assert _snap(snap_compare, _after(_dashboard_settled, then), device=0)


def test_pair_unknown_host_key(snap_compare):
    from screens.dialogs import ConfirmDialog

    async def then(pilot: Pilot) -> None:
        await pilot.press("p")
        await pilot.press(*"gate-4", "tab", *"pi", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))

    assert _snap(snap_compare, _after(_probed, then))


# An 80x24 terminal (and a big one): the dashboard's figures and the footer's main keys stay readable.


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard_sized(snap_compare, size):
    fleet = _fleet()
    app = _app(fleet, open_device=fleet.records[0])
    assert snap_compare(app, terminal_size=size, run_before=_after(_dashboard_settled))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_devices_sized(snap_compare, size):
    assert snap_compare(_app(), terminal_size=size, run_before=_after(_probed))
