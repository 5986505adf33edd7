"""Ask for an engine rebuild: runtime, precision, calibration frames, and whether to activate the result.

Dismissed with an :class:`~fieldtui.protocol.EngineRebuildRequest` (None on escape). Only runtimes this
device can build for are offered; the others are listed with the reason (a Hailo HEF is compiled
off-device). The request is checked by the protocol model before the dialog closes.
"""

from __future__ import annotations

from pydantic import ValidationError
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, RadioSet, Static

from fieldtui.protocol import EngineRebuildRequest, RuntimeIdentity
from screens.widgets.toggles import Checkbox, RadioButton

PRECISIONS = ("fp32", "fp16", "int8")


class RebuildDialog(ModalScreen["EngineRebuildRequest | None"]):
    CSS_PATH = "rebuild_dialog.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, runtimes: list[RuntimeIdentity], backend: str | None = None, precision: str = "int8"
    ) -> None:
        super().__init__()
        self.runtimes = runtimes
        self.buildable = [r.runtime for r in runtimes if r.can_build]
        self.backend = (
            backend if backend in self.buildable else (self.buildable[0] if self.buildable else None)
        )
        self.precision = precision

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("Rebuild an engine from the serving model", style="bold"), classes="question")
            with Horizontal(classes="choices"):
                with RadioSet(id="backend"):
                    for r in self.runtimes:
                        yield RadioButton(
                            r.runtime, r.runtime == self.backend, disabled=not r.can_build, name=r.runtime
                        )
                with RadioSet(id="precision"):
                    for p in PRECISIONS:
                        yield RadioButton(p, p == self.precision, name=p)
            cannot = [r for r in self.runtimes if not r.can_build]
            if cannot:
                notes = "\n".join(f"{r.runtime}: {r.build_note or r.reason}" for r in cannot)
                yield Static(Text(notes, style="dim"), classes="detail")
            yield Input("64", id="frames", placeholder="INT8 calibration frames (1-2048)")
            yield Checkbox(
                "activate the engine when it is built (health-checked, asks first)", False, id="activate"
            )
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("Rebuild (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#backend").border_title = "runtime"
        self.query_one("#precision").border_title = "precision"
        self.query_one("#frames").border_title = "calibration frames (int8)"
        self.query_one("#ok", Button).disabled = self.backend is None
        if self.backend is None:
            self.query_one("#error", Static).update(
                Text("this device cannot build an engine for any runtime", "red")
            )
        # Runtime and precision come preset from the highlighted engine: enter rebuilds it as it was,
        # shift+tab goes back to change them. Nothing destructive: activating asks again.
        self.query_one("#ok" if self.backend else "#cancel", Button).focus()

    def _chosen(self, selector: str) -> str | None:
        pressed = self.query_one(selector, RadioSet).pressed_button
        return pressed.name if pressed is not None else None

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        error = self.query_one("#error", Static)
        frames = self.query_one("#frames", Input).value.strip()
        if not frames.isdigit():
            error.update(Text("calibration frames: a whole number, 1 to 2048", "red"))
            return
        try:
            request = EngineRebuildRequest(
                backend=self._chosen("#backend") or self.backend or "onnxruntime",
                precision=self._chosen("#precision") or "int8",
                calibration_frames=int(frames),
                activate=self.query_one("#activate", Checkbox).value,
            )
        except ValidationError as err:
            first = err.errors()[0]
            error.update(Text(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", "red"))
            return
        self.dismiss(request)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
