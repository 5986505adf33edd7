"""Credentials never reach the technician's screen or a terminal log: a password planted in a stream
URL Trio pulls, in a camera URI typed into the source dialog, and in command-line arguments is looked
for in the rendered screens (their SVG export, as snapshots are) and in everything the CLI prints."""

from __future__ import annotations

from textual.widgets import Input

from fieldtui.cli.main import main
from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord
from fieldtui.redact import redact
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.dialogs import PromptDialog
from screens.trio import TrioScreen
from tests.tui_pilot import SIZE, until

PLANTED = ("hunter2", "secretpw")


def _app(agent, tmp_path) -> FieldtuiApp:
    config = ConsoleConfig(tmp_path / "console")
    port = int(agent.url.rsplit(":", 1)[1])
    record = DeviceRecord(name="dock-1", host="127.0.0.1", port=port, origin=["manual"])
    config.save_device(record, agent.token)
    return FieldtuiApp(Fleet(config, mdns=False), open_device=record)


def test_redact_hides_userinfo_and_secret_parameters_only():
    assert redact("pulls rtsp://user:secretpw@10.0.4.20:554/live?token=abc&x=1") == (
        "pulls rtsp://***@10.0.4.20:554/live?token=***&x=1"
    )
    assert (
        redact("http://[::1]:8470/v1/health and basic fusions")
        == "http://[::1]:8470/v1/health and basic fusions"
    )


async def test_no_planted_password_on_the_trio_screen_or_in_a_toast(agent_inproc, tmp_path):
    with agent_inproc.client() as c:
        body = {
            "mode": "check-once",
            "base_url": "http://127.0.0.1:9",
            "stream_url": "rtsp://user:secretpw@10.0.4.20:554/live",
        }
        c.put("/v1/forwarding", json=body).raise_for_status()
    app = _app(agent_inproc, tmp_path)
    shots: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        await pilot.press("s")  # the source dialog: a camera URI with its password typed in
        await until(pilot, "the source dialog", lambda: isinstance(app.screen, PromptDialog))
        app.screen.query_one(Input).value = "rtsp://admin:hunter2@127.0.0.1:9/live"
        await pilot.press("enter")
        await until(pilot, "the toast", lambda: any("Switching" in n.message for n in app._notifications))
        shots.append(app.export_screenshot())
        await until(pilot, "the job's end", lambda: sum(1 for _ in app._notifications) >= 2, timeout=30)
        shots.append(app.export_screenshot())
        await pilot.press("f")
        await until(pilot, "the Trio screen", lambda: isinstance(app.screen, TrioScreen) and app.screen.state)
        await pilot.pause(0.2)
        shots.append(app.export_screenshot())
        toasts = [f"{n.title} {n.message}" for n in app._notifications]
        assert dash is not None
    assert app._exception is None
    assert "rtsp://***@10.0.4.20:554/live" in shots[-1].replace("&#160;", " ")
    for text in (*shots, *toasts):
        for word in PLANTED:
            assert word not in text


def test_no_planted_password_in_command_line_output(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "console"))
    outputs = []
    for argv in (
        ["status", "http://admin:hunter2@[::1"],
        ["status", "http://admin:hunter2@127.0.0.1:9", "--timeout", "2"],
        ["add", "rtsp://user:secretpw@cam/live"],
        ["models", "http://u:hunter2@127.0.0.1:9/?token=secretpw"],
    ):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own one-line refusal
            code = exit_.code
        out, err = capsys.readouterr()
        assert code != 0 and "fieldtui" in err.strip().splitlines()[-1] and "Traceback" not in err
        outputs.append(out + err)
    for text in outputs:
        for word in PLANTED:
            assert word not in text, text
