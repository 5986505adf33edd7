"""States a technician reads at a glance: a lost link, on/off toggles, help, j/k, dialog focus.

Pilot against real agents on 127.0.0.1; assertions on the text a person sees (colours stripped).
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import RadioSet
from textual.widgets.selection_list import Selection

from screens.dashboard import DashboardScreen
from screens.widgets.banner import LinkBanner
from screens.widgets.toggles import Checkbox, RadioButton, SelectionList
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


def test_every_screen_takes_its_toggles_from_the_one_module():
    plain = re.compile(r"from textual\.widgets import[^\n]*\b(Checkbox|RadioButton|SelectionList)\b")
    screens = Path(__file__).resolve().parent.parent / "screens"
    offenders = [
        p.name for p in screens.rglob("*.py") if p.name != "toggles.py" and plain.search(p.read_text())
    ]
    assert offenders == [], f"import these from screens.widgets.toggles: {offenders}"
