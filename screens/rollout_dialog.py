"""Ask what to roll out to the marked devices: a model file, its version, a canary, waves and how many
failures to tolerate. Dismissed with a checked :class:`~fieldtui.rollout.request.RolloutRequest` (None on
escape); a bad field keeps the dialog open with one red line saying what to change.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Static

from fieldtui.config import SavedDevice
from fieldtui.errors import ConsoleError
from fieldtui.rollout.request import check_request
from screens.push_dialog import ModelTree, tilde

FIELDS = ("model", "version", "canary", "waves", "failures")


class RolloutDialog(ModalScreen["RolloutRequest | None"]):
    CSS_PATH = "rollout_dialog.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, devices: list[SavedDevice], start: Path | None = None) -> None:
        super().__init__()
        self.devices = devices
        self.start = start or Path.cwd()

    def compose(self) -> ComposeResult:
        names = ", ".join(e.device.name for e in self.devices)
        with Vertical(classes="dialog"):
            yield Static(Text(f"Roll out a model to {len(self.devices)} device(s)", style="bold"))
            yield Static(Text(names, style="dim"), classes="names")
            yield ModelTree(self.start, id="tree")
            yield Input(placeholder="path of a .onnx, .engine, .hef or .tflite file", id="model")
            yield Input(placeholder="version name, e.g. v8 or 2026.11.1", id="version")
            with Horizontal(classes="row"):
                yield Label("canary devices")
                yield Input("1", id="canary")
                yield Label("waves")
                yield Input("100%", placeholder="25%,100% or exp", id="waves")
                yield Label("max failures")
                yield Input("0", placeholder="1 or 10%", id="failures")
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("Start (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#tree").focus()

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.query_one("#model", Input).value = tilde(Path(event.path))
        version = self.query_one("#version", Input)
        if not version.value:
            version.value = event.path.stem
        version.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        values = {name: self.query_one(f"#{name}", Input).value for name in FIELDS}
        try:
            request = check_request(self.devices, **values)
        except ConsoleError as err:
            # the command line's flag names, as the fields are labelled here
            text = re.sub(
                r"--(canary|waves|max-failures)\b", lambda m: m.group(1).replace("-", " "), str(err)
            )
            self.query_one("#error", Static).update(Text(text, style="red"))
            return
        self.dismiss(request)
