"""A rollout from the TUI: the marked devices, the dialog's answers, then waves of push, activate and
probation, each device's stage live (fieldtui/rollout/runner.py drives it; this screen only shows it).

The runner runs in this screen's worker and saves the state after every step, so ``p`` (pause: no new
device starts, those under way finish) and leaving a paused rollout are safe: ``fieldtui rollout --resume
ID`` continues it. ``a`` aborts (asks first): the devices under way stop and those of this rollout that
took the new version go back to what they served before.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from fieldtui.config import SavedDevice, device_key
from fieldtui.errors import ConsoleError
from fieldtui.protocol import DeviceRecord
from fieldtui.rollout import DeviceProgress, RolloutRunner, RolloutState, RolloutStore
from screens.dialogs import ConfirmDialog
from screens.widgets.footer import Footer

COLUMNS = ("WAVE", "DEVICE", "STAGE", "VIA", "DETAIL")  # the detail last: a long reason runs off the right
STAGE_STYLE = {
    "done": "green",
    "failed": "bold red",
    "rolled_back": "bold red",
    "unreachable": "yellow",
    "skipped": "dim",
    "queued": "dim",
}
STATUS_STYLE = {
    "running": "bold",
    "paused": "yellow",
    "aborted": "bold red",
    "failed": "bold red",
    "done": "green",
}


def open_rollout(screen: Any, records: list[DeviceRecord]) -> None:
    """From the device list: check the marked devices, ask the dialog, then show the rollout running."""
    from screens.rollout_dialog import RolloutDialog

    config = getattr(screen.fleet, "config", None)
    try:
        if config is None:
            raise ConsoleError("rollouts go to saved devices, and this console has none")
        entries = marked_devices(records, [config.find(device_key(r)) for r in records])
    except ConsoleError as err:
        screen.notify(str(err), title="No rollout", severity="warning")
        return

    def chosen(state: RolloutState | None) -> None:
        if state is not None:
            screen.app.push_screen(RolloutScreen(state, config, start=True))

    screen.app.push_screen(RolloutDialog(entries), chosen)


def marked_devices(records: list[DeviceRecord], saved: list[SavedDevice | None]) -> list[SavedDevice]:
    """The marked devices as saved ones with a way in (a token, or SSH); ConsoleError naming the others
    (said before the dialog opens; make_plan checks the tokens again)."""
    if not records:
        raise ConsoleError("no device is marked: mark devices with space, then press R")
    unsaved = [r.name for r, e in zip(records, saved, strict=True) if e is None]
    if unsaved:
        raise ConsoleError(f"not saved: {', '.join(unsaved)}; pair them (p) or add them (a) first")
    entries = [e for e in saved if e is not None]
    missing = [e.device.name for e in entries if not e.token and e.device.ssh is None]
    if missing:
        raise ConsoleError(f"no token is saved for {', '.join(missing)}: pair it (p) first")
    return entries


def open_last_rollout(screen: Any, store: RolloutStore | None = None) -> None:
    """The newest rollout saved on this laptop, shown as it stands (p resumes one that did not end)."""
    store = store or RolloutStore()
    config = getattr(screen.fleet, "config", None)
    newest = next(iter(store.list()), None)
    if newest is None or config is None:
        screen.notify("No rollout saved on this laptop yet: mark devices with space, then R.", timeout=6)
        return
    screen.app.push_screen(RolloutScreen(newest, config, store))


def wave_name(state: RolloutState, index: int) -> str:
    return "canary" if index == 0 and state.plan.canary else f"wave {index + 1}"


def stage_text(d: DeviceProgress, now: float) -> Text:
    """The stage in words (never colour alone): "uploading 40%", "probation, 12 s left", "rolled back"."""
    if d.stage == "uploading":
        words = f"uploading {d.percent:.0f}%"
    elif d.stage == "probation" and d.probation_ends_at is not None:
        left = d.probation_ends_at - now
        words = f"probation, {math.ceil(left)} s left" if left > 0 else "probation, verdict due"
    else:
        words = d.stage.replace("_", " ")
    return Text(words, style=STAGE_STYLE.get(d.stage, ""))


class RolloutScreen(Screen[None]):
    """See the module docstring. ``devices``: the saved devices (a ConsoleConfig) the runner links to."""

    CSS_PATH = "rollout.tcss"
    AUTO_FOCUS = "#progress"
    TITLE = "fieldtui"
    SUB_TITLE = "rollout"
    BINDINGS = [
        Binding("p", "pause", "Pause/resume"),
        Binding("a", "abort", "Abort"),
        Binding("escape", "back", "Back"),
    ]

    class Changed(Message):
        """The runner moved a device or the rollout on; only the newest matters."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, RolloutScreen.Changed)

    class Finished(Message):
        """The runner ended (``error``: it could not start or go on)."""

        def __init__(self, error: str | None = None) -> None:
            super().__init__()
            self.error = error

    def __init__(
        self, state: RolloutState, devices: Any, store: RolloutStore | None = None, *, start: bool = False
    ) -> None:
        """A new rollout (``start``: run it now), or a saved one shown as it stands until ``p``."""
        super().__init__()
        self.state = state
        self.start = start
        self.devices = devices
        self.store = store or RolloutStore()
        self.runner: RolloutRunner | None = None
        self.started = False  # a runner was asked for (it exists once the worker runs)
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="summary")
        yield Static(id="waves")
        yield DataTable(id="progress", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in COLUMNS:
            table.add_column(label, key=label)
        self.render_state()
        self.set_interval(1.0, self.render_state)  # probation counts down between steps
        if self.start:
            self.started = True
            self.run_rollout()

    def clock(self) -> float:
        return getattr(self.app, "clock", time.time)()

    @work(exclusive=True, exit_on_error=False, group="rollout")
    async def run_rollout(self) -> None:
        try:
            self.runner = RolloutRunner(
                self.state, store=self.store, devices=self.devices, on_change=self._changed
            )
            self.post_message(self.Changed())
            self.state = await self.runner.run()
        except ConsoleError as err:
            self.post_message(self.Finished(str(err)))
            return
        self.post_message(self.Finished())

    def _changed(self, state: RolloutState) -> None:
        self.state = state  # the runner may have taken a newer state from disk (another console)
        self.post_message(self.Changed())

    @on(Changed)
    def _on_changed(self) -> None:
        self.render_state()

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        self.error = message.error
        self.render_state()
        state = self.state
        if message.error is not None:
            self.notify(message.error, title="Rollout stopped", severity="error", timeout=20)
        else:
            counts = ", ".join(f"{n} {stage.replace('_', ' ')}" for stage, n in state.counts().items())
            severity = "information" if state.status == "done" else "error"
            why = f": {state.abort_reason}" if state.abort_reason else ""
            self.notify(f"{counts}{why}", title=f"Rollout {state.status}", severity=severity, timeout=20)

    # --- rendering ----------------------------------------------------------------------------------

    def render_state(self) -> None:
        state, now = self.state, self.clock()
        try:
            summary = self.query_one("#summary", Static)
        except NoMatches:  # left: the runner's last save (on its way out) has nothing to redraw
            return
        plan = state.plan
        text = Text.assemble(
            (f"rollout {plan.id}", "bold"),
            f"  {plan.version} to {len(plan.devices)} device(s)  ",
            (state.status.upper(), STATUS_STYLE.get(state.status, "")),
            (" (stopped: p resumes)" if self.resumable() else "", "yellow"),
            f"  wave {min(state.current_wave, len(plan.waves) - 1) + 1} of {len(plan.waves)}",
            f"  {len(state.failures())} failed (abort above {plan.max_failures})",
        )
        if state.abort_reason or self.error:
            text.append(f"\n{self.error or state.abort_reason}", style="red")
        summary.update(text)
        self.query_one("#waves", Static).update(self.waves_text(state))
        table = self.query_one(DataTable)
        keys = [d.device for d in state.devices]
        rows = [self.cells(state, d, now) for d in state.devices]
        if [k.value for k in table.rows] == keys:
            for key, cells in zip(keys, rows, strict=True):
                for label, cell in zip(COLUMNS, cells, strict=True):
                    table.update_cell(key, label, cell, update_width=True)
        else:
            table.clear()
            for key, cells in zip(keys, rows, strict=True):
                table.add_row(*cells, key=key)

    def waves_text(self, state: RolloutState) -> Text:
        text = Text()
        for i, size in enumerate(state.plan.waves):
            devices = state.wave(i)
            if all(d.final for d in devices):
                ended: dict[str, int] = {}
                for d in devices:
                    if d.stage != "done":
                        ended[d.stage] = ended.get(d.stage, 0) + 1
                where = ", ".join(f"{n} {stage.replace('_', ' ')}" for stage, n in ended.items()) or "done"
                style = "red" if ended else "green"
            elif i == state.current_wave and state.status in ("running", "paused"):
                where, style = f"▶ {state.status}", "bold"
            else:
                where, style = "waiting", "dim"
            if i:
                text.append("   ")
            text.append(f"{wave_name(state, i)}: {size} device(s) ", style="")
            text.append(f"[{where}]", style=style)
        return text

    def cells(self, state: RolloutState, d: DeviceProgress, now: float) -> list[Text]:
        via = {"ssh": "via SSH", "http": "HTTP"}.get(d.via, "")
        return [
            Text(wave_name(state, d.wave)),
            Text(d.name or d.device, style="bold"),
            stage_text(d, now),
            Text(via, style="yellow" if d.via == "ssh" else ""),
            Text(d.reason, style="red" if d.stage in ("failed", "rolled_back") else "dim"),
        ]

    # --- keys ---------------------------------------------------------------------------------------

    def resumable(self) -> bool:
        """A saved rollout that did not end, shown without a runner yet."""
        return not self.started and self.state.status in ("running", "paused", "failed")

    def _live(self) -> bool:
        return self.runner is not None and self.state.status in ("running", "paused")

    def action_pause(self) -> None:
        if self.resumable():
            self.started = True  # the runner goes on from where each device stood
            self.run_rollout()
            self.notify(f"Resuming rollout {self.state.plan.id}.", timeout=3)
            return
        if not self._live():
            self.notify("The rollout is not running.", severity="warning", timeout=3)
            return
        assert self.runner is not None
        if self.state.status == "running":
            self.runner.pause()
            self.notify("Paused: devices under way finish, no new one starts. p resumes.", timeout=4)
        else:
            self.runner.resume()
            self.notify("Resumed.", timeout=2)

    def action_abort(self) -> None:
        if not self._live():
            self.notify("The rollout is not running.", severity="warning", timeout=3)
            return
        plan = self.state.plan

        def answered(yes: bool | None) -> None:
            if yes and self.runner is not None and self._live():
                self.runner.abort("aborted by the technician")

        back = (
            f"the devices of this rollout that took {plan.version} go back to what they served before"
            if plan.rollback_on_abort
            else f"devices that took {plan.version} keep it"
        )
        self.app.push_screen(
            ConfirmDialog(f"Abort rollout {plan.id}?", "Abort", f"Devices under way stop; {back}."), answered
        )

    def action_back(self) -> None:
        state = self.state
        if self._live() and state.status == "running":
            self.notify(
                "The rollout runs from this screen: pause it (p) or abort it (a) first, or let it finish.",
                severity="warning",
                timeout=6,
            )
            return
        if self.started and state.status == "paused":
            self.app.notify(
                f"Rollout {state.plan.id} is paused and saved: `fieldtui rollout --resume {state.plan.id}` "
                "continues it.",
                timeout=12,
            )
        self.app.pop_screen()
