"""States a technician reads at a glance: a lost link, on/off toggles, help, j/k, dialog focus.

Pilot against real agents on 127.0.0.1; assertions on the text a person sees (colours stripped).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from textual.app import App, ComposeResult
from textual.widgets import Button, DataTable, RadioSet, RichLog, Tree
from textual.widgets.selection_list import Selection

from fieldtui.protocol import DeviceRecord, ForwardingRules
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.widgets.banner import LinkBanner
from screens.widgets.toggles import Checkbox, RadioButton, SelectionList
from tests.tui_fakes import T0, FakeAgent, FakeFleet, log_lines, picture_png
from tests.tui_fakes_jobs import BACKENDS, benchmark_list, engine_list
from tests.tui_pilot import SIZE, app_on, screen_text, until


async def test_a_lost_link_greys_the_figures_and_says_what_happened_in_words(
    agent_proc, tmp_path, monkeypatch
):
    monkeypatch.setattr(DashboardScreen, "RETRY_MAX_S", 1.0)  # retry every second while it is down
    app = app_on(agent_proc, tmp_path)
    reasons: list[str] = []

    def hook(message) -> None:
        if isinstance(message, DashboardScreen.LinkLost):
            reasons.append(message.reason)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        await until(pilot, "samples", lambda: dash.telemetry.count >= 2 and dash.renders > 0)
        live = screen_text(app)
        assert "pipeline running" in live and "stale" not in live and not dash.has_class("-stale")

        agent_proc.stop()  # SIGTERM: uvicorn ends the event stream, then nothing listens on the port
        banner = dash.query_one(LinkBanner)
        await until(pilot, "a retry refused", lambda: "refused the connection" in str(banner.render()))
        await pilot.pause(1.2)  # the age ticks once a second
        text = screen_text(app)
        assert "agent unreachable since" in text and "(the agent refused the connection)" in text
        assert "pipeline running" not in text and "pipeline unknown (link lost)" in text
        assert re.search(r"⏸ stale · last seen [1-9]\d* s ago, at \d\d:\d\d:\d\d", text), text
        assert dash.has_class("-stale")  # the CSS greys the charts, camera health, classes, findings
        # The first loss was the stream going away, said in words, never httpx's own.
        assert reasons[0] == "the agent stopped answering (connection closed)", reasons
        assert not any("chunked" in r or "Error" in r for r in reasons), reasons
    assert app._exception is None


class _Toggles(App[None]):
    CSS = "RadioSet, SelectionList { height: auto; }"

    def compose(self) -> ComposeResult:
        yield Checkbox("activate after the upload", True, id="c-on")
        yield Checkbox("activate after the upload", False, id="c-off")
        with RadioSet():
            yield RadioButton("int8", True, id="r-on")
            yield RadioButton("fp16", False, id="r-off")
        yield SelectionList[str](Selection("fp32", "fp32", True), Selection("int8", "int8", False))


async def test_on_and_off_differ_by_glyph_with_the_colours_stripped():
    app = _Toggles()
    async with app.run_test(size=(60, 30)) as pilot:
        await pilot.pause()
        lines = [line.strip() for line in screen_text(app).splitlines() if line.strip()]
        text = "\n".join(lines)
        assert "▐✓▌ activate after the upload" in text and "▐ ▌ activate after the upload" in text
        assert "▐●▌ int8" in text and "▐○▌ fp16" in text
        assert "▐✓▌ fp32" in text and "▐ ▌ int8" in text
        await pilot.click("#c-off")  # and it follows the value
        assert text.count("▐✓▌ activate") == 1 and screen_text(app).count("▐✓▌ activate") == 2


def test_every_screen_takes_its_toggles_and_footer_from_the_console_s_own_widgets():
    screens = Path(__file__).resolve().parent.parent / "screens"
    for names, home in (("Checkbox|RadioButton|SelectionList", "toggles.py"), ("Footer", "footer.py")):
        plain = re.compile(rf"from textual\.widgets import[^\n]*\b({names})\b")
        offenders = [p.name for p in screens.rglob("*.py") if p.name != home and plain.search(p.read_text())]
        assert offenders == [], f"import {names} from screens/widgets/{home}: {offenders}"


# --- help, j/k and dialog focus, on canned data (tests/tui_fakes.py: the service swapped, not a socket)


async def _never_saved(update):  # the focus check never presses Save
    raise AssertionError(f"saved {update}")


def _fleet() -> FakeFleet:
    gate = FakeAgent(logs=log_lines(80))  # no live samples: this is about keys, not telemetry
    gate.info = gate.info.model_copy(update={"backends": BACKENDS})
    gate.engines_doc, gate.benchmarks_doc = engine_list(), benchmark_list()
    names = ("gate-3", "dock-1", "yard-2")
    records = [DeviceRecord(name=n, host=f"10.0.4.{i + 17}", port=8470) for i, n in enumerate(names)]
    return FakeFleet([(records[0], gate), (records[1], None), (records[2], None)])


def _first_section(app) -> str:
    found = re.search(r"([A-Z][\w ]*): this screen", screen_text(app))
    return found.group(0) if found else ""


async def _help_starts_with(pilot, title: str) -> None:
    await pilot.press("question_mark")
    await until(pilot, "help", lambda: type(pilot.app.screen).__name__ == "HelpScreen")
    text = screen_text(pilot.app)
    assert _first_section(pilot.app) == f"{title}: this screen", text
    titles = [section[0] for section in pilot.app.screen.sections]
    assert titles[0] == f"{title}: this screen" and "Everywhere" in titles[1:], titles  # above every other
    await pilot.press("escape")


async def _moves(pilot, selector: str) -> None:
    """j then k move the cursor of the list or table ``selector`` down and back up."""
    widget = pilot.app.screen.query_one(selector)
    widget.focus()
    await pilot.pause()
    where = (lambda: widget.cursor_row) if isinstance(widget, DataTable) else (lambda: widget.highlighted)
    if isinstance(widget, Tree):
        where = lambda: widget.cursor_line  # noqa: E731
    start = where()
    await pilot.press("j")
    moved = where()
    await pilot.press("k")
    assert (start, moved, where()) == (start, start + 1, start), selector


async def test_help_leads_with_this_screen_j_k_move_everywhere_and_dialogs_focus_the_field(
    tmp_path, monkeypatch
):
    from screens.add_device import AddDeviceScreen
    from screens.benchmark import BenchmarkScreen
    from screens.dialogs import PromptDialog
    from screens.engines import EnginesScreen
    from screens.logs import LogsScreen
    from screens.models import ModelsScreen
    from screens.pair_dialog import PairDialog
    from screens.probe_dialog import ProbeDialog
    from screens.rebuild_dialog import RebuildDialog
    from screens.rollout_dialog import RolloutDialog
    from screens.trio_rules import RulesDialog

    for name in ("yolov8n-v9.onnx", "jk-v2.onnx"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    fleet = _fleet()
    gate, api = fleet.records[0], fleet.agents["gate-3"]
    app = FieldtuiApp(fleet, clock=lambda: T0)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, "the device list", lambda: app.screen.query_one(DataTable).row_count == 3)
        await _moves(pilot, "#devices")
        await _help_starts_with(pilot, "Devices")
        # Every dialog opens on the first field a technician types into.
        for dialog, first in (
            (AddDeviceScreen(fleet), "host"),
            (PairDialog(fleet), "host"),
            (ProbeDialog([]), "ranges"),
            (RulesDialog(ForwardingRules(), _never_saved), "classes"),
            (PromptDialog("Camera source", "demo:"), "answer"),
            (RolloutDialog([]), "model"),
            (RebuildDialog(engine_list().runtimes), "ok"),  # preset from the engine: enter rebuilds it
        ):
            await app.push_screen(dialog)
            await pilot.pause()
            assert app.focused is not None and app.focused.id == first, dialog
            for button in dialog.query(Button):  # and at 80x24 it fits, down to its buttons
                assert app.screen.region.contains_region(button.region), (dialog, button)
            app.pop_screen()

        await app.push_screen(ModelsScreen(api, gate))
        await until(pilot, "the versions", lambda: app.screen.listing is not None)
        await _moves(pilot, "#versions")
        await _help_starts_with(pilot, "Models")
        await pilot.press("p")  # the push dialog: a typed path is not lost to the tree
        await until(pilot, "the push dialog", lambda: type(app.screen).__name__ == "PushDialog")
        assert app.focused.id == "path"
        ok = app.screen.query_one("#ok")  # 24 rows: the dialog fits down to its buttons
        assert ok.region.height and app.screen.region.contains_region(ok.region), ok.region
        await pilot.press(*"jk-v2.onnx", "enter")  # j and k type into a field, they do not move
        assert app.screen.query_one("#version").value == "jk-v2" and app.focused.id == "version"
        tree = app.screen.query_one("#tree", Tree)
        await until(pilot, "the model files", lambda: len(tree.root.children) == 2)
        await _moves(pilot, "#tree")
        await _help_starts_with(pilot, "Push a model file")  # in a dialog too, outside a text field
        app.pop_screen()
        app.pop_screen()

        await app.push_screen(EnginesScreen(api, gate))
        await until(pilot, "the engines", lambda: app.screen.listing is not None)
        await _moves(pilot, "#engines")
        app.pop_screen()
        await app.push_screen(BenchmarkScreen(api, gate))
        history = app.screen.query_one("#history", DataTable)
        await until(pilot, "the history", lambda: history.row_count == 2)
        await _moves(pilot, "#history")
        await _moves(pilot, "#precisions")
        app.pop_screen()
        await app.push_screen(LogsScreen(api, gate))
        log = app.screen.query_one(RichLog)
        await until(pilot, "log lines", lambda: len(log.lines) > 30)
        log.focus()
        await pilot.press("k", "k")  # back from the tail
        up = log.scroll_y
        await pilot.press("j")
        assert log.scroll_y == up + 1
    assert app._exception is None


async def test_z_zooms_the_camera_view_to_the_whole_screen_and_back():
    fleet = _fleet()
    gate = fleet.agents["gate-3"]
    gate.picture = picture_png()
    app = FieldtuiApp(fleet, clock=lambda: T0, open_device=fleet.records[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        view = dash.query_one("#camera")
        await until(pilot, "a picture", lambda: view.picture is not None)
        small = view.content_size
        await pilot.press("z")
        await pilot.pause()
        assert not dash.query_one("#charts").display and view.content_size.width >= 76
        assert view.content_size.height > small.height
        await until(pilot, "a picture for the new size", lambda: view.picture.width > small.width)
        await pilot.press("z")
        await pilot.pause()
        assert dash.query_one("#charts").display and view.content_size == small
    assert app._exception is None


def test_transport_failures_are_said_in_a_technician_s_words():
    from fieldtui.client import transport_error

    url = "http://10.0.4.17:8470/v1/events"
    request = httpx.Request("GET", url)
    chunked = httpx.RemoteProtocolError(
        "peer closed connection without sending complete message body (incomplete chunked read)",
        request=request,
    )
    cases = [
        (chunked, "the agent stopped answering (connection closed)"),
        (httpx.ReadError("", request=request), "the agent stopped answering (connection closed)"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "the agent refused the connection"),
        (httpx.ReadTimeout("", request=request), "timed out waiting for the agent"),
        (httpx.ConnectTimeout("", request=request), "timed out connecting to the agent"),
    ]
    for exc, words in cases:
        err = transport_error(exc, url)
        assert err.summary == words and "chunked" not in str(err) and "Error" not in str(err), err
        assert url in str(err)  # the full line (the CLI's) still says where
