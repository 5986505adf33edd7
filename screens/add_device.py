"""Add a device by hand: address, port, token and an optional TLS pin, checked against the device.

The form stays open until the device accepted the token (or is off, which saves with a warning), so a
mistyped token costs a retype of one field, not of the whole form. Saving goes through the fleet to the
console config (a 0600 file).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Static

from fieldtui.config import parse_host
from fieldtui.errors import ConsoleError
from fieldtui.fleet import Added
from fieldtui.protocol import DEFAULT_PORT
from screens.dialogs import FormDialog


class AddDeviceScreen(FormDialog[Added | None]):
    CSS_PATH = "add_device.tcss"

    class Saved(Message):
        def __init__(self, added: Added) -> None:
            super().__init__()
            self.added = added

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, fleet: Any) -> None:
        super().__init__()
        self.fleet = fleet

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Static("Add a device", id="title")
            yield Label("Host or URL")
            yield Input(placeholder="192.168.1.40, host:port or https://host:8470", id="host")
            yield Label("Port")
            yield Input(str(DEFAULT_PORT), id="port", type="integer", max_length=5)
            yield Label("Token (from `fieldtui-agent token` on the device)")
            yield Input(placeholder="paste the token", password=True, id="token")
            yield Label("TLS fingerprint (optional: pins the certificate, implies HTTPS)")
            yield Input(
                placeholder="64 hex digits, as `fieldtui-agent token --json` prints", id="fingerprint"
            )
            yield Static(id="error")
            with Horizontal(id="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        # enter moves down the form and submits from the last field, as a technician expects
        order = ["host", "port", "token", "fingerprint"]
        i = order.index(event.input.id or "host")
        if i + 1 < len(order):
            self.query_one(f"#{order[i + 1]}", Input).focus()
        else:
            self._submit()

    @on(Button.Pressed, "#save")
    def _submit(self) -> None:
        value = {
            k: self.query_one(f"#{k}", Input).value.strip() for k in ("host", "port", "token", "fingerprint")
        }
        try:
            host, port, https = parse_host(value["host"]) if value["host"] else ("", None, None)
        except ConsoleError as err:
            self._show_error(str(err))
            return
        if port is None:
            port = int(value["port"]) if value["port"].isdigit() else 0
        if https is False and value["fingerprint"]:
            self._show_error("an http:// URL with a fingerprint: use https:// or clear the fingerprint")
            return
        if https and not value["fingerprint"]:
            self._show_error("https without a fingerprint cannot be pinned: paste the TLS fingerprint too")
            return
        self.query_one("#save", Button).disabled = True
        self.query_one("#error", Static).update("checking the token with the device…")
        self._save(host, port, value["token"], value["fingerprint"] or None)

    @work(exclusive=True, exit_on_error=False, group="save")
    async def _save(self, host: str, port: int, token: str, fingerprint: str | None) -> None:
        try:
            added = await self.fleet.add(host, port, token, fingerprint)
        except ConsoleError as err:
            self.post_message(self.Failed(str(err)))
            return
        self.post_message(self.Saved(added))

    @on(Saved)
    def _saved(self, message: Saved) -> None:
        self.dismiss(message.added)

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        self.query_one("#save", Button).disabled = False
        self._show_error(message.error)

    def _show_error(self, text: str) -> None:
        self.query_one("#error", Static).update(Text(text, style="bold"))
        self.query_one("#error").add_class("-error")
