"""The Trio screen against a real agent on 127.0.0.1 forwarding to the fake Trio server: a test forward
shows the answer, a refused key shows Trio's error with its fix, rules edited in the form reach the
agent, and the key itself is never on screen."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from rich.console import Console
from textual.widgets import Input

from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.trio import TrioScreen
from screens.trio_rules import RulesDialog
from tests.fake_trio import FakeTrio, ok, trio_error
from tests.tui_pilot import SIZE, until

KEY = "sk-trio-tui-0a1b2c3d4e5f6a7b"


@pytest.fixture
def trio() -> Iterator[FakeTrio]:
    with FakeTrio() as fake:
        yield fake


def _app(agent, tmp_path) -> FieldtuiApp:
    config = ConsoleConfig(tmp_path / "console")
    port = int(agent.url.rsplit(":", 1)[1])
    record = DeviceRecord(name="dock-1", host="127.0.0.1", port=port, origin=["manual"])
    config.save_device(record, agent.token)
    return FieldtuiApp(Fleet(config, mdns=False), open_device=record)


def _text(screen, selector: str) -> str:
    """What a Static shows, tables included, as plain text."""
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(screen.query_one(selector).content)
    return console.export_text()


def _screen_text(app: FieldtuiApp) -> str:
    return "\n".join(_text(app.screen, s) for s in ("#settings", "#rules", "#answer"))


async def test_test_forward_answer_error_and_rules(agent_inproc, trio: FakeTrio, tmp_path):
    with agent_inproc.client() as c:
        body = {"base_url": trio.url, "stream_url": "rtsp://cam/live", "api_key": KEY}
        c.put("/v1/forwarding", json=body).raise_for_status()
    app = _app(agent_inproc, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("f")
        await until(pilot, "the Trio screen", lambda: isinstance(app.screen, TrioScreen))
        screen = app.screen
        await until(pilot, "the settings", lambda: screen.state is not None)
        assert "rtsp://cam/live" in _text(screen, "#settings") and "check-once" in _text(screen, "#settings")

        trio.reply(ok(triggered=True, explanation="a cross lies on the floor"))
        await pilot.press("t")
        await until(pilot, "the answer", lambda: screen.result is not None and not screen.testing)
        answer = _text(screen, "#answer")
        assert "TRIGGERED" in answer and "a cross lies on the floor" in answer and "HTTP 200" in answer
        assert "bytes sent" in answer and screen.query_one("#answer").has_class("-ok")

        trio.reply(trio_error(401, "UNAUTHORIZED", "invalid API key", "create a new key in the Trio console"))
        await pilot.press("t")
        await until(pilot, "the error", lambda: screen.result is not None and not screen.result.ok)
        answer = _text(screen, "#answer")
        assert "HTTP 401" in answer and "fix" in answer and "create a new key in the Trio console" in answer
        assert screen.query_one("#answer").has_class("-failed")

        await pilot.press("e")
        await until(pilot, "the rules form", lambda: isinstance(app.screen, RulesDialog))
        form = app.screen
        form.query_one("#classes", Input).value = "circle, cross"
        form.query_one("#min_confidence", Input).value = "1.5"
        form.query_one("#classes", Input).focus()
        await pilot.press("enter")
        await until(pilot, "the refusal", lambda: "min confidence" in _text(form, "#error"))
        form.query_one("#min_confidence", Input).value = "0.7"
        await pilot.press("enter")
        await until(pilot, "the saved rules", lambda: screen.state.rules.classes == ["circle", "cross"])
        assert "circle, cross" in _text(screen, "#rules")
        assert KEY not in _screen_text(app)
    with agent_inproc.client() as c:
        rules = c.get("/v1/forwarding").json()["rules"]
    assert rules["classes"] == ["circle", "cross"] and rules["min_confidence"] == 0.7
    assert app._exception is None
