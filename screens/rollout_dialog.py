"""Ask what to roll out to the marked devices: a model file, its version, a canary, waves and how many
failures to tolerate. Checked and planned by :func:`fieldtui.rollout.make_plan` (the same checks as
``fieldtui rollout``; the file is hashed there, in a worker), then dismissed with the new rollout's
:class:`~fieldtui.rollout.RolloutState` (None on escape). A bad field keeps the dialog open with one red
line saying what to change, and nothing is written.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Static

from fieldtui.config import SavedDevice
from fieldtui.errors import ConsoleError
from fieldtui.rollout import RolloutPlan, RolloutState, make_plan
from screens.push_dialog import ModelTree, picked

FIELDS = ("model", "version", "canary", "waves", "failures")


class RolloutDialog(ModalScreen["RolloutState | None"]):
    CSS_PATH = "rollout_dialog.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class Planned(Message):
        """The fields were right: ``plan`` is the rollout to start."""

        def __init__(self, plan: RolloutPlan) -> None:
            super().__init__()
            self.plan = plan

    class Refused(Message):
        """A field was wrong: ``error`` says which and what to change."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

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
            yield Input(
                placeholder="path of a .onnx, .engine, .hef or .tflite file (shift+tab: the tree)", id="model"
            )
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
        self.query_one("#model").focus()  # a typed path is not lost to the tree (shift+tab reaches it)

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        picked(self, event, "#model")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        values = {name: self.query_one(f"#{name}", Input).value.strip() for name in FIELDS}
        canary = values["canary"] or "0"
        if not values["model"]:
            self._say("model file: choose one in the tree or type its path")
        elif not canary.isdigit():
            self._say(f"canary {canary[:20]!r}: a number of devices, like 1 (0: no canary wave)")
        else:
            self._say("checking, then hashing the file…", "dim")
            self.plan(values["model"], values["version"], int(canary), values["waves"], values["failures"])

    @work(exclusive=True, exit_on_error=False, group="plan")
    async def plan(self, model: str, version: str, canary: int, waves: str, failures: str) -> None:
        try:
            plan = await make_plan(
                model, version, self.devices, canary=canary, waves=waves or "100%", failures=failures or "0"
            )
        except ConsoleError as err:
            self.post_message(self.Refused(str(err)))
            return
        self.post_message(self.Planned(plan))

    @on(Refused)
    def _refused(self, message: Refused) -> None:
        # the command line's flag names, as the fields are labelled here
        self._say(
            re.sub(r"--(canary|waves|max-failures)\b", lambda m: m.group(1).replace("-", " "), message.error)
        )

    @on(Planned)
    def _planned(self, message: Planned) -> None:
        self.dismiss(RolloutState.start(message.plan, {e.key: e.device.name for e in self.devices}))

    def _say(self, text: str, style: str = "red") -> None:
        self.query_one("#error", Static).update(Text(text, style=style))
