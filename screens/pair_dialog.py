"""Pair a device over SSH: host (or a ~/.ssh/config alias), user, port; the fleet does the rest.

SSH is the root of trust, so the host key matters: an unknown key is shown with its fingerprint in a
confirmation (yes: pair again accepting it, and it is remembered in known_hosts); a changed key is a
warning and a refusal, with no way around it from here. Dismissed with the fleet's ``Added`` result.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Static

from fieldtui.errors import ConsoleError
from screens.dialogs import ConfirmDialog, FormDialog


class PairDialog(FormDialog[Any]):
    CSS_PATH = "pair_dialog.tcss"

    class Paired(Message):
        def __init__(self, added: Any = None, error: str = "", unknown: Any = None) -> None:
            super().__init__()
            self.added, self.error, self.unknown = added, error, unknown

    def __init__(self, fleet: Any) -> None:
        super().__init__()
        self.fleet = fleet
        self.working = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("Pair a device over SSH", style="bold"), classes="question")
            for name, label, hint in (
                ("host", "host", "address or ~/.ssh/config alias, e.g. gate-3 or 10.0.4.17"),
                ("user", "user", "optional: from ~/.ssh/config, else yours"),
                ("port", "port", "optional: 22 or ~/.ssh/config's"),
            ):
                with Horizontal(classes="row"):
                    yield Label(label, classes="label")
                    yield Input(placeholder=hint, id=name)
            yield Static(
                Text("Reads the agent's token and TLS pin over SSH: nothing to type by hand.", style="dim"),
                id="state",
            )
            with Horizontal(classes="buttons"):
                yield Button("Pair (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        if self.working:
            return
        port_text = self.query_one("#port", Input).value.strip()
        state = self.query_one("#state", Static)
        try:
            port = int(port_text) if port_text else None
            if port is not None and not 0 < port < 65536:
                raise ValueError
        except ValueError:
            state.update(Text(f"port {port_text!r}: a number from 1 to 65535, or empty", style="red"))
            return
        self._run(port, accept_new=False)

    def _run(self, port: int | None, *, accept_new: bool) -> None:
        self.working = True
        host = self.query_one("#host", Input).value
        self.query_one("#state", Static).update(Text(f"connecting to {host.strip()} over SSH…", style="dim"))
        self.pair(host, self.query_one("#user", Input).value, port, accept_new)

    @work(exclusive=True, exit_on_error=False, group="pair")
    async def pair(self, host: str, user: str, port: int | None, accept_new: bool) -> None:
        from fieldtui.ssh import HostKeyUnknown

        try:
            added = await self.fleet.pair(host, user, port, accept_new=accept_new)
        except HostKeyUnknown as err:
            self.post_message(self.Paired(unknown=(err, port)))
            return
        except ConsoleError as err:  # a changed host key, no agent, refused login...: one line
            self.post_message(self.Paired(error=str(err)))
            return
        self.post_message(self.Paired(added=added))

    @on(Paired)
    def _paired(self, message: Paired) -> None:
        self.working = False
        state = self.query_one("#state", Static)
        if message.added is not None:
            self.dismiss(message.added)
        elif message.unknown is not None:
            err, port = message.unknown
            state.update(Text(f"{err.host}: unknown SSH host key", style="yellow"))

            def answered(yes: bool | None) -> None:
                if yes:
                    self._run(port, accept_new=True)
                else:
                    state.update(Text("not paired: the host key was not accepted", style="yellow"))

            question = f"{err.host} is not a known SSH host. Trust this key?"
            detail = (
                f"{err.fingerprint}\n\nCompare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` "
                "on the device (or its label). Accepting adds it to known_hosts."
            )
            self.app.push_screen(ConfirmDialog(question, "Trust and pair", detail), answered)
        else:
            state.update(
                Text(f"✗ {message.error}", style="bold red" if "CHANGED" in message.error else "red")
            )
