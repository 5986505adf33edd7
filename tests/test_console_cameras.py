# ruff: noqa: F811  (the fixtures imported from tests.real_ssh_fixtures are parameters here)
"""The console on a real three-camera agent under uvicorn (``[[cameras]]`` in config.toml, demo cameras,
``yard`` going dark), shared by the tests of this module in file order:

- the dashboard (Pilot): the camera strip with every camera's FPS, confidence and badge; ``[``/``]``
  switch the panels to another camera; ``g`` opens the grid of every camera's snapshot, enter picks one;
- ``fieldtui camera HOST add|set|remove`` over HTTP, and
``fieldtui-agent camera ...`` beside it: each change reaches the agent, the other cameras run on, a camera
password is never printed, and every bad input is one line (exit 2) that changes nothing. Over SSH: Debian's
real OpenSSH server running the device's ``fieldtui-agent camera``, the password on its stdin."""

from __future__ import annotations

import io

import pytest
from textual.widgets import DataTable

from fieldtui.config import ConsoleConfig
from fieldtui.protocol import CameraList, CameraStatus, DeviceRecord
from fieldtui.ssh import SSHSession
from screens.camera_grid import CameraGridScreen
from screens.dashboard import DashboardScreen
from screens.devices import DevicesScreen
from screens.widgets.camera import CameraView
from screens.widgets.camerastrip import CameraStrip
from tests.console_cli import fail_line, ok_json, run
from tests.multicam_agent import cameras_toml, demo, serve_cameras
from tests.real_ssh_fixtures import (  # noqa: F401  (fixtures)
    ALIAS,
    client_key,
    device,
    device_agent,
    device_user,
    laptop,
    real_server,
)
from tests.test_cli_engines import agent_cli
from tests.tui_pilot import SIZE, app_on, until

SECRET = "pw-s3cret"
DEAD = f"rtsp://admin:{SECRET}@127.0.0.1:1/x"


CAMERAS = [("front", demo(1)), ("back", demo(2)), ("yard", demo(3, faults="dark@0-86400"))]


@pytest.fixture(scope="module")
def agent(tmp_path_factory, tiny_model):
    running = serve_cameras(tmp_path_factory.mktemp("multicam"), tiny_model, CAMERAS)
    yield running
    running.stop()


@pytest.fixture
def dock(agent, tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "console"))
    port = int(agent.url.rsplit(":", 1)[1])
    ConsoleConfig().save_device(
        DeviceRecord(name="dock-1", host="127.0.0.1", port=port, origin=["manual"]), agent.token
    )
    return agent


def strip(dash: DashboardScreen) -> str:
    return str(dash.query_one(CameraStrip).render())


def footer_keys(dash: DashboardScreen) -> set[str]:
    return {b.action for _, b, enabled, _ in dash.app.active_bindings.values() if enabled and b.show}


async def test_strip_switch_and_grid_on_a_three_camera_agent(agent, tmp_path):
    app = app_on(agent, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        await until(pilot, "the camera strip", lambda: dash.query_one(CameraStrip).display)
        await until(
            pilot,
            "every camera's figures and yard's dark badge",
            lambda: (
                all(f"{n} " in strip(dash) for n, _ in CAMERAS)
                and "fps conf" in strip(dash)
                and "⚠ check" in strip(dash)
            ),
        )
        text = strip(dash)
        assert text.index("▸ front") < text.index("back") < text.index("yard")  # front selected first
        assert "✓ ok" in text and dash.selected_camera == "front"
        assert {"next_camera", "camera_grid"} <= footer_keys(dash)

        await pilot.press("right_square_bracket")
        assert dash.selected_camera == "back" and "▸ back" in strip(dash)
        assert dash.query_one("#camera").border_title == "camera · back"
        view = dash.query_one(CameraView)
        assert view.camera == "back"
        await until(
            pilot,
            "back's samples on the charts",
            lambda: (
                dash.rendered_ts is not None
                and dash.shown_telemetry().latest is not None
                and dash.shown_telemetry().latest.camera_name == "back"
            ),
        )
        await until(pilot, "back's picture", lambda: view.picture is not None and not view.message)
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert dash.selected_camera == "yard"

        def yard_dark_on_the_panel() -> bool:
            latest = dash.shown_telemetry().latest
            health = latest.camera if latest is not None else None
            panel = str(dash.query_one("#camera-health").render())
            return (
                health is not None
                and health.brightness < 35
                and f"brightness {health.brightness:5.0f}" in panel
            )

        await until(pilot, "yard's own (dark) camera health on the panel", yard_dark_on_the_panel)
        assert dash.shown_telemetry().latest.camera_name == "yard"

        await pilot.press("g")
        await until(pilot, "the grid", lambda: isinstance(app.screen, CameraGridScreen))
        grid = app.screen
        tiles = list(grid.query(CameraView))
        assert [t.camera for t in tiles] == ["front", "back", "yard"]
        await until(pilot, "a picture in every tile", lambda: all(t.picture is not None for t in tiles))
        assert tiles[2].border_subtitle == "⚠ check" and tiles[0].border_subtitle == "✓ ok"
        assert grid.focused is tiles[2]  # the grid opens on the selected camera
        await pilot.press("left", "enter")
        await until(pilot, "back on the dashboard", lambda: app.screen is dash)
        assert dash.selected_camera == "back" and "▸ back" in strip(dash)

        await pilot.press("escape")  # the device list says it too
        await until(pilot, "the device list", lambda: isinstance(app.screen, DevicesScreen))
        table = app.screen.query_one(DataTable)
        await until(
            pilot,
            "the camera count in the health cell",
            lambda: (
                table.row_count == 1
                and str(table.get_row_at(0)[app.screen.shown_columns.index("HEALTH")]).endswith(
                    " · 3 cameras, 1 unhealthy"
                )
            ),
        )
    assert app._exception is None


def listed(agent) -> list[tuple]:
    """(name, enabled, conf, source) of every camera, read from the agent itself."""
    with agent.client() as http:
        cams = CameraList.model_validate_json(http.get("/v1/cameras").content).cameras
    return [(c.name, c.enabled, c.conf, c.source.uri) for c in cams]


def test_status_and_discover_say_how_many_cameras_and_how_many_are_unwell(capsys, dock):
    def status() -> str:
        code, out, err = run(capsys, "status", "dock-1")
        assert code == 0, err
        return out

    out = status()
    for _ in range(50):  # yard's health check needs a few frames of its own
        if "cameras   3 cameras, 1 unhealthy" in out:
            break
        out = status()
    assert "cameras   3 cameras, 1 unhealthy" in out, out
    assert any(line.split()[:1] == ["yard"] and "CHECK: " in line for line in out.splitlines()), out
    port = dock.url.rsplit(":", 1)[1]
    code, out, err = run(capsys, "discover", "--probe", "127.0.0.1/32", "--port", port, "--timeout", "0.3")
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert (
        header.split()[-1] == "CAMERAS"
        and row.startswith("dock-1")
        and row.endswith("3 cameras, 1 unhealthy")
    )


def test_the_visit_report_shows_every_camera_of_the_device(dock):
    import asyncio
    import time

    from fieldtui.report import collect
    from fieldtui.report_html import render

    entry = ConsoleConfig().find("dock-1")
    report = asyncio.run(collect([entry], time.time() - 60, snapshot_width=160))
    cams = report["devices"][0]["cameras"]
    assert [c["name"] for c in cams] == [name for name, _ in CAMERAS]
    assert all(c["snapshot"].startswith("data:image/jpeg;base64,") for c in cams)
    page = render(report)
    assert all(f"<h3>Camera {name}</h3>" in page for name, _ in CAMERAS)
    assert page.count('class="snap"') == len(CAMERAS)


def test_add_set_remove_over_http_and_on_the_device(capsys, dock, monkeypatch):
    added = CameraStatus.model_validate(
        ok_json(capsys, "camera", "dock-1", "add", "gate", demo(4), "--conf", "0.4", "--json")
    )
    assert added.name == "gate" and added.conf == 0.4 and added.enabled and added.source.uri == demo(4)
    assert [c[0] for c in listed(dock)] == ["front", "back", "yard", "gate"]

    changed = CameraStatus.model_validate(
        ok_json(capsys, "camera", "dock-1", "set", "gate", "--disable", "--conf", "default", "--json")
    )
    assert not changed.enabled and changed.conf is None and changed.state == "stopped"
    code, out, err = run(capsys, "camera", "dock-1", "set", "gate", "--enable")
    assert code == 0, err
    assert out.startswith("changed camera gate: ") and out.rstrip().endswith(f"source {demo(4)}")

    # A password goes in through stdin (``-``) and never comes out, on this side or the agent's.
    monkeypatch.setattr("sys.stdin", io.StringIO(DEAD + "\n"))
    code, out, err = run(capsys, "camera", "dock-1", "set", "gate", "--source", "-")
    assert code == 2 and SECRET not in out + err  # a dead RTSP switch is refused: gate keeps its source
    assert listed(dock)[3] == ("gate", True, None, demo(4))
    monkeypatch.setattr("sys.stdin", io.StringIO(DEAD + "\n"))
    code, out, err = run(capsys, "camera", "dock-1", "add", "dead", "-")
    assert code == 0, err
    assert out.startswith("added camera dead: ") and out.rstrip().endswith("source rtsp://***@127.0.0.1:1/x")
    assert SECRET not in out + err

    code, out, err = run(capsys, "camera", "dock-1", "remove", "dead")
    assert code == 0, err
    assert out.strip() == "removed camera dead; 4 cameras left: front, back, yard, gate"

    # The device's own CLI (what the SSH path runs) changes the same agent the same way.
    code, out, err = agent_cli(
        capsys, "camera", "set", "gate", "--conf", "0.3", "--home", str(dock.home), "--json"
    )
    assert code == 0, err
    assert CameraStatus.model_validate_json(out).conf == 0.3
    code, out, err = agent_cli(capsys, "camera", "remove", "gate", "--home", str(dock.home))
    assert code == 0, err
    assert out.strip() == "removed camera gate; 3 cameras left: front, back, yard"
    code, out, err = agent_cli(capsys, "camera", "add", "back", demo(5), "--home", str(dock.home))
    assert code == 2 and "camera 'back' already exists" in err
    assert dock.stderr().count(SECRET) == 0


HOSTILE = [
    (
        ("add", "Bad_Name", "demo:"),
        "camera name 'Bad_Name' is not valid: use 1-32 characters of a-z, 0-9 and '-'",
    ),
    (("add", "../../etc", "demo:"), "camera name '../../etc' is not valid"),
    (("add", "x" * 100, "demo:"), "camera name given is not valid"),
    (("add", "cam\n1", "demo:"), "camera name 'cam\\n1' is not valid"),
    (("add", "front", demo(9)), "camera 'front' already exists: change it with `camera set front ...`"),
    (("add", "new", "  "), "the source URI is empty"),
    (("add", "new", f"rtsp://u:{SECRET}@cam/x\nrm -rf /"), "the source URI contains a control character"),
    (("add", "new", "ftp://example.invalid/x"), "ftp"),
    (("add", "new", "demo:", "--conf", "2"), "2 is not between 0 and 1"),
    (("add", "new", "demo:", "--conf", "nan"), "nan is not between 0 and 1"),
    (
        ("set", "nosuch", "--conf", "0.5"),
        "no camera named 'nosuch' on this device (it has front, back, yard)",
    ),
    (("set", "front"), "nothing to change: give --source URI, --conf X, --enable or --disable"),
    (("set", "front", "--source", "/no/such/file.mp4"), "/no/such/file.mp4"),
    (("remove", "nosuch"), "nosuch"),
]


@pytest.mark.parametrize(("args", "line"), HOSTILE, ids=[" ".join(a)[:30] for a, _ in HOSTILE])
def test_bad_input_is_one_line_and_changes_nothing(capsys, dock, args, line):
    before = listed(dock)
    try:
        got = fail_line(capsys, "camera", "dock-1", *args)
    except SystemExit as exit:  # argparse's own refusal: its usage, then the one line that matters
        assert exit.code == 2
        got = capsys.readouterr().err.strip().splitlines()[-1]
        assert got.startswith("fieldtui camera HOST add: error: argument --conf: ")
    else:
        assert got.startswith("fieldtui: ")
    assert line in got and SECRET not in got
    assert listed(dock) == before


def test_removing_the_last_camera_is_one_line(capsys, dock):
    for name in [c[0] for c in listed(dock)][1:]:
        ok_json(capsys, "camera", "dock-1", "remove", name, "--json")
    last = listed(dock)
    line = fail_line(capsys, "camera", "dock-1", "remove", last[0][0])
    assert line.startswith(
        f"fieldtui: camera {last[0][0]!r} is the last one; add another camera before removing it"
    )
    assert listed(dock) == last


def test_camera_add_and_set_over_openssh_with_the_password_on_stdin(
    capsys, laptop, device, real_server, device_agent, monkeypatch
):
    cams = cameras_toml([("front", demo(1)), ("back", demo(2))])
    device.write(".local/share/fieldtui-agent/config.toml", "[models]\nprobation_s = 0\n\n" + cams, 0o600)
    agent = device_agent(source=None)
    real_server("openssh")  # known host: with --ssh, no pairing is needed
    sent: list[tuple[str, str | None]] = []  # what reached the device: command lines (ps) and stdin
    real_run = SSHSession.run

    async def spy(self, argv, **kw):
        sent.append((" ".join(argv), kw.get("input")))
        return await real_run(self, argv, **kw)

    monkeypatch.setattr(SSHSession, "run", spy)
    args = ("add", "gate", DEAD, "--conf", "0.5", "--disabled", "--ssh", "--json")
    added = CameraStatus.model_validate(ok_json(capsys, "camera", ALIAS, *args))
    assert (added.name, added.conf, added.enabled) == ("gate", 0.5, False)
    assert added.source.uri == "rtsp://***@127.0.0.1:1/x"
    assert any(stdin == DEAD + "\n" for _, stdin in sent)
    assert not any(SECRET in line for line, _ in sent)
    changed = ok_json(
        capsys, "camera", ALIAS, "set", "gate", "--enable", "--conf", "default", "--ssh", "--json"
    )
    assert changed["conf"] is None and changed["enabled"] is True
    assert listed(agent) == [
        ("front", True, None, demo(1)),
        ("back", True, None, demo(2)),
        ("gate", True, None, "rtsp://***@127.0.0.1:1/x"),
    ]
    assert SECRET not in capsys.readouterr().err + agent.stderr()
    # fieldtui source over SSH: the first camera's source, the URI on stdin like the camera commands'
    sent.clear()
    switched = ok_json(capsys, "source", ALIAS, demo(3), "--ssh", "--json")
    assert switched["name"] == "front" and listed(agent)[0] == ("front", True, None, demo(3))
    assert any(stdin == demo(3) + "\n" for _, stdin in sent) and not any(demo(3) in line for line, _ in sent)


def test_the_strip_reads_without_colour_and_wraps_between_cameras_only():
    from fieldtui.protocol import CameraHealth, Sample, SourceStatus, StageTimes
    from screens.widgets.camerastrip import strip_text

    def cam(name: str, *, up: bool = True, ok: bool = True, enabled: bool = True) -> CameraStatus:
        health = CameraHealth(
            brightness=9 if not ok else 120, sharpness=50, ok=ok, reasons=[] if ok else ["dark"]
        )
        sample = Sample(
            ts=1.0,
            fps=5.0,
            latency_p50_ms=9,
            latency_p95_ms=12,
            stages_ms=StageTimes(),
            confidence_avg=0.8,
            drop_rate=0.0,
            camera=health,
            camera_name=name,
        )
        state = "running" if up else "reconnecting"
        source = SourceStatus(uri="demo:", kind="demo", up=up)
        return CameraStatus(name=name, enabled=enabled, state=state, source=source, sample=sample)

    cams = [cam("front"), cam("yard", ok=False), cam("gate", up=False), cam("spare", enabled=False)]
    text = strip_text(cams, {}, "yard")
    assert text.plain == (
        "  front 5.0 fps conf 0.80 ✓ ok  │ ▸ yard 5.0 fps conf 0.80 ⚠ check  │   "
        "gate 5.0 fps conf 0.80 ✗ down  │   spare – off"
    )
    lines = strip_text(cams, {}, "yard", width=70).plain.splitlines()
    assert len(lines) == 2 and all(len(line) <= 70 for line in lines)
    assert lines[1].startswith("  gate") and lines[0].endswith("⚠ check")
