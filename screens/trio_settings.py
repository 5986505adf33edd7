"""Where Trio forwarding goes: the endpoint, the API key (write-only), the stream URL, the condition, on/off.

The key field is a password input that is never filled from the agent (the agent never returns the key):
it says only whether a key is set; typing a new one replaces it, leaving it empty keeps it. Only the
fields changed are sent, in one ``PUT /v1/forwarding``; the agent checks them all and changes nothing
when one is wrong (its line shows under the fields). A new endpoint without a key drops the old key
on the agent (it is bound to its endpoint): the Trio screen says so once saved.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from fieldtui.forwarding import key_state
from fieldtui.protocol import ForwardingState, ForwardingUpdate
from screens.trio_rules import Save, SavingDialog
from screens.widgets.toggles import Checkbox


class SettingsDialog(SavingDialog):
    def __init__(self, state: ForwardingState, save: Save) -> None:
        super().__init__(save)
        self.state = state

    def compose(self) -> ComposeResult:
        s = self.state
        key = key_state(s.api_key)
        with Vertical(classes="dialog"):
            yield Static(Text("Trio forwarding: where it goes", style="bold"), classes="question")
            with Horizontal(classes="row"):
                yield Label("endpoint", classes="label")
                yield Input(s.base_url, placeholder="https://trio.machinefi.com/api", id="base_url")
            with Horizontal(classes="row"):
                yield Label("API key", classes="label")
                hint = (
                    f"{key}: type a new key to replace it" if key != "not set" else "not set: paste the key"
                )
                yield Input("", placeholder=hint, password=True, id="api_key")
            with Horizontal(classes="row"):
                yield Label("stream URL", classes="label")
                yield Input(s.stream_url or "", placeholder="rtsp://… Trio can reach", id="stream_url")
            with Horizontal(classes="row"):
                yield Label("condition", classes="label")
                yield Input(s.condition, placeholder="what Trio should judge", id="condition")
            yield Checkbox("forward by the rules (off: only test forwards)", s.enabled, id="enabled")
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("Save (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#base_url", Input).focus()

    def update(self) -> ForwardingUpdate:
        """The fields changed (and the key, when one was typed)."""
        s = self.state
        fields: dict[str, object] = {}
        base_url = self.query_one("#base_url", Input).value.strip()
        if base_url != s.base_url:
            fields["base_url"] = base_url
        stream = self.query_one("#stream_url", Input).value.strip() or None
        if stream != s.stream_url:
            fields["stream_url"] = stream
        condition = self.query_one("#condition", Input).value.strip()
        if condition != s.condition:
            fields["condition"] = condition
        enabled = self.query_one("#enabled", Checkbox).value
        if enabled != s.enabled:
            fields["enabled"] = enabled
        key = self.query_one("#api_key", Input).value.strip()
        if key:
            fields["api_key"] = key
        return ForwardingUpdate(**fields)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        update = self.update()
        if not update.model_fields_set:
            self.dismiss(None)
            return
        self.save(update)
