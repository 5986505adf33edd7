"""Trio forwarding on one device: mode, endpoint, the key, rules; a test forward; setting them (``c``, ``e``).

The API (an :class:`~fieldtui.client.AgentClient` or a fake with the same methods) is injected. The
agent never returns the key, only a masked description of it, and this screen shows less still: whether a
key is set and where it comes from (fieldtui/forwarding.py). The endpoint, key, stream URL and condition
are set in screens/trio_settings.py, the rules in screens/trio_rules.py; both save through the agent's
``PUT /v1/forwarding`` and keep the form open on a refusal. A test
forward (``t``) runs in the "trio" worker and ends in :class:`TrioScreen.Tested`: the answer (triggered,
explanation, latency, payload size) or the error with Trio's remediation.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Static

from fieldtui.errors import AgentClientError
from fieldtui.forwarding import key_state
from fieldtui.protocol import ForwardingRules, ForwardingState, ForwardResult
from fieldtui.redact import redact
from screens.widgets.footer import Footer


def fields(rows: list[tuple[str, Any]]) -> Table:
    table = Table(show_header=False, box=None, expand=True, padding=(0, 1))
    table.add_column("what", style="dim", width=14, no_wrap=True)
    table.add_column("value", ratio=1)
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else Text(str(value)))
    return table


def endpoint(state: ForwardingState) -> str:
    if state.mode == "frame":
        url = state.frame_url if "://" in state.frame_url else state.base_url.rstrip("/") + state.frame_url
        return f"POST {url} (a JPEG per forward)"
    pulled = (
        redact(state.stream_url) if state.stream_url else "(no stream_url set: Trio has nothing to watch)"
    )
    return f"{state.base_url} pulls {pulled}"


def settings_table(state: ForwardingState) -> Table:
    enabled = Text("on", "bold green") if state.enabled else Text("off (only test forwards)", "yellow")
    shown = key_state(state.api_key)
    key = Text(shown, "red" if shown.startswith("not set") else "")
    s = state.stats
    forwards = ", ".join(f"{k} {v}" for k, v in sorted(s.forwards.items())) or "none yet"
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(s.dropped.items())) or "none"
    return fields(
        [
            ("forwarding", enabled),
            ("mode", state.mode),
            ("endpoint", endpoint(state)),
            ("API key", key),
            ("condition", state.condition),
            (
                "timeout",
                f"{state.timeout_s:g} s, queue {s.queue_depth}/{s.queue_capacity or state.queue_size}",
            ),
            ("forwards", forwards),
            ("dropped", dropped),
        ]
    )


def rules_table(rules: ForwardingRules) -> Table:
    return fields(
        [
            ("classes", ", ".join(rules.classes) or "every class"),
            ("confidence", f"at least {rules.min_confidence:.2f}"),
            ("cooldown", f"{rules.cooldown_s:g} s per class"),
            ("rate", f"{rules.rate_per_minute:g} a minute, bursts of {rules.burst}"),
            ("redact", ", ".join(rules.redact_classes) or "nothing blurred"),
        ]
    )


def answer_text(result: ForwardResult) -> Text:
    """The test forward as the CLI prints it, coloured: where it went, the verdict or the fix."""
    where = f"{result.mode} to {result.url}" if result.url else result.mode
    status = f"HTTP {result.http_status}" if result.http_status else "no HTTP answer"
    took = f" in {result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
    text = Text()
    text.append(f"{where}: {status}{took}, {result.payload_bytes} bytes sent\n", style="dim")
    if result.ok:
        if result.triggered:
            text.append("TRIGGERED", style="bold yellow")
        else:
            text.append("not triggered", style="bold green")
        if result.trio_latency_ms is not None:
            text.append(f"  (Trio took {result.trio_latency_ms:.0f} ms)", style="dim")
        text.append(f"\n{result.explanation or 'no explanation'}")
    elif result.error is not None:
        text.append(f"✗ {result.error.code}: ", style="bold red")
        text.append(result.error.message)
        text.append("\nfix  ", style="bold cyan")
        text.append(result.error.remediation)
        if result.retry_after_s is not None:
            text.append(
                f"\nretry in {result.retry_after_s:.0f} s (Trio's Retry-After; forwarding waits)", "dim"
            )
    else:
        text.append(f"✗ {result.outcome}", style="bold red")
    return text


class TrioScreen(Screen[None]):
    CSS_PATH = "trio.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("t", "test", "Test forward"),
        Binding("c", "configure", "Endpoint & key"),
        Binding("e", "edit_rules", "Edit rules"),
        Binding("g", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(self, state: ForwardingState | None, error: str | None = None) -> None:
            super().__init__()
            self.state, self.error = state, error

    class Tested(Message):
        def __init__(self, result: ForwardResult | None, error: str | None = None) -> None:
            super().__init__()
            self.result, self.error = result, error

    def __init__(self, api: Any, record: Any) -> None:
        super().__init__()
        self.api = api
        self.record = record
        self.state: ForwardingState | None = None
        self.result: ForwardResult | None = None
        self.testing = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield Static(id="settings")
            yield Static(id="rules")
        yield Static(id="answer")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.record.name}: Trio"
        self.query_one("#settings").border_title = "forwarding"
        self.query_one("#rules").border_title = "rules (e edits)"
        self.query_one("#answer").border_title = "test forward (t)"
        self.query_one("#settings", Static).update(Text("reading the settings…", style="dim"))
        self.query_one("#answer", Static).update(
            Text("press t to send one frame to Trio now and see what it answers", style="dim")
        )
        self.reload()

    @work(exclusive=True, exit_on_error=False, group="read")
    async def reload(self) -> None:
        try:
            self.post_message(self.Loaded(await self.api.forwarding()))
        except AgentClientError as err:
            self.post_message(self.Loaded(None, str(err)))

    def action_reload(self) -> None:
        self.reload()

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.state is None:
            self.query_one("#settings", Static).update(Text(f"✗ {message.error}", style="red"))
            return
        self.state = message.state
        self.query_one("#settings", Static).update(settings_table(message.state))
        self.query_one("#rules", Static).update(rules_table(message.state.rules))

    def action_test(self) -> None:
        if self.testing:
            return
        self.testing = True
        answer = self.query_one("#answer", Static)
        answer.set_classes("")
        answer.update(Text("sending a test forward… (up to the timeout)", style="dim"))
        self.test_forward()

    @work(exclusive=True, exit_on_error=False, group="trio")
    async def test_forward(self) -> None:
        try:
            self.post_message(self.Tested(await self.api.trio_test()))
        except AgentClientError as err:
            self.post_message(self.Tested(None, str(err)))

    @on(Tested)
    def _tested(self, message: Tested) -> None:
        self.testing = False
        answer = self.query_one("#answer", Static)
        if message.result is None:
            answer.set_classes("-failed")
            answer.update(Text(f"✗ {message.error}", style="red"))
            return
        self.result = message.result
        answer.set_classes("-ok" if message.result.ok else "-failed")
        answer.update(answer_text(message.result))
        self.reload()  # the counters moved

    def action_edit_rules(self) -> None:
        from screens.trio_rules import RulesDialog

        if self.state is not None:
            self.app.push_screen(RulesDialog(self.state.rules, self.api.forwarding_update), self._saved)

    def action_configure(self) -> None:
        from screens.trio_settings import SettingsDialog

        if self.state is not None:
            self.app.push_screen(SettingsDialog(self.state, self.api.forwarding_update), self._saved)

    def _saved(self, state: ForwardingState | None) -> None:
        """A form saved ``state`` (None: cancelled, nothing sent)."""
        if state is None:
            return
        before = self.state
        self.post_message(self.Loaded(state))
        dropped = (
            before is not None
            and before.base_url != state.base_url
            and not key_state(before.api_key).startswith("not set")
            and key_state(state.api_key).startswith("not set")
        )
        if dropped:  # issue 17's rule, said where the technician acted
            self.notify(
                "the API key was dropped: it was bound to the old endpoint. Press c and give it again.",
                title="Trio key removed",
                severity="warning",
                timeout=15,
            )
        else:
            self.notify("the agent forwards by the new settings now", title="Trio settings saved")

    def commands(self) -> list[SystemCommand]:
        return [
            SystemCommand(
                "Trio test forward", "send one frame to Trio now and show the answer", self.action_test
            ),
            SystemCommand(
                "Edit Trio rules", "classes, confidence, cooldown, rate, redaction", self.action_edit_rules
            ),
            SystemCommand(
                "Set Trio endpoint and API key",
                "endpoint, API key (write-only), stream URL, condition, on/off",
                self.action_configure,
            ),
            SystemCommand("Reload Trio settings", "read the forwarding settings again", self.action_reload),
        ]
