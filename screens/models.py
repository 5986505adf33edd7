"""A device's model store: versions, the one serving, history with reasons; push, activate, rollback, delete.

The screen takes the device's API (an :class:`~fieldtui.client.AgentClient` or a fake with the same
methods) and the push service (:func:`fieldtui.push.push_model` by default) by injection. Every change
runs in the "store" worker group, one at a time; progress arrives through the push service's callback
as :class:`ModelsScreen.StepMade` messages (a newer step replaces one still queued, so a fast upload
never builds a backlog), and each run ends in :class:`ModelsScreen.StoreChanged`, after which the
listing is read again. Destructive actions (rollback, delete) ask first.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, ProgressBar, Static

from fieldtui.errors import AgentClientError, ConsoleError
from fieldtui.jobwatch import watch_job
from fieldtui.protocol import BAD_VERDICTS, DamagedVersion, Job, ModelList, ModelVersion
from fieldtui.push import PushProgress, push_model
from screens.dialogs import ConfirmDialog
from screens.replies import Reply, read_reply
from screens.widgets.footer import Footer

PHASES = {
    "hashing": "hashing the file here",
    "uploading": "uploading",
    "verifying": "the device checks the hash and loads the model",
    "activating": "activating",
    "rolling back": "rolling back",
}
OUTCOME_STYLE = {
    "good": "green",
    "failed": "red",
    "rolled_back": "yellow",
    "auto_rolled_back": "red",
    "superseded": "yellow",
}
VERDICT_STYLE = {"passed": "green", "failed": "red", "rolled_back": "red", "superseded": "yellow"}


def size_text(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def stamp(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def step_text(step: PushProgress) -> str:
    """The label beside the bar: what is happening, and how far in bytes or percent."""
    what = PHASES.get(step.phase, step.phase)
    if step.phase in ("hashing", "uploading") and step.total:
        what += f"  {size_text(step.done)} of {size_text(step.total)}"
    if step.stage:
        what += f"  ({step.stage})"
    return what


class ModelsScreen(Screen[None]):
    CSS_PATH = "models.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("p", "push", "Push a file"),
        Binding("a", "activate", "Activate selected"),
        Binding("r", "rollback", "Rollback"),
        Binding("d", "delete", "Delete selected"),
        Binding("g", "reload", "Reload"),
    ]

    class Listed(Reply[ModelList]):
        """``GET /v1/models`` answered."""

    class StepMade(Message):
        def __init__(self, step: PushProgress) -> None:
            super().__init__()
            self.step = step

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ModelsScreen.StepMade)

    class StoreChanged(Message):
        """A push, activation, rollback or delete ended: ``title`` and ``text`` say how."""

        def __init__(self, title: str, text: str, ok: bool) -> None:
            super().__init__()
            self.title, self.text, self.ok = title, text, ok

    def __init__(self, api: Any, record: Any, *, push: Any = push_model, job_timeout: float = 120.0) -> None:
        super().__init__()
        self.api = api
        self.record = record
        self.push_service = push
        self.job_timeout = job_timeout
        self.listing: ModelList | None = None
        self.busy = False
        self.last_step: PushProgress | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="serving")
        yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="progress"):
            yield Static(id="stage")
            yield ProgressBar(id="bar", total=100, show_eta=False)
        yield DataTable(id="history", cursor_type="none", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.record.name}: models"
        versions = self.query_one("#versions", DataTable)
        versions.border_title = "versions"
        versions.add_columns(
            " ", "version", "state", "verdict", "size", "sha256", "created", "format", "layout"
        )
        history = self.query_one("#history", DataTable)
        history.border_title = "history (newest first)"
        history.add_columns("when", "action", "version", "was", "outcome", "reason")
        self.query_one("#serving", Static).update(Text("reading the store…", style="dim"))
        self.reload()

    # --- reading the store --------------------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="list")
    async def reload(self) -> None:
        await read_reply(self, self.Listed, self.api.models())

    def action_reload(self) -> None:
        self.reload()

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        if message.value is None:
            self.query_one("#serving", Static).update(Text(f"✗ {message.error}", style="red"))
            return
        self.listing = listing = message.value
        serving = listing.serving.version or listing.serving.path if listing.serving else "nothing"
        line = Text.assemble(("serving ", "dim"), (serving, "bold green"))
        if listing.rollback is not None:
            line.append(f"   rollback goes to {listing.rollback.label} ({listing.rollback.why})", style="dim")
        else:
            line.append("   no rollback: nothing else has passed probation", style="dim")
        if listing.probation is not None:
            line.append(f"   {listing.probation.version} on probation", style="yellow")
            # Read again until probation ends; the timer dies with the screen.
            self.set_timer(2.0, self.reload)
        line.append(
            f"   keeps {listing.keep} versions, uploads up to {size_text(listing.max_upload_bytes)}", "dim"
        )
        if (pull := listing.pull) is not None:  # pull mode: say whether the registry's offers are checked
            if pull.signed:
                line.append(f"   pulls from {pull.registry}, signed offers only (key {pull.key})", "dim")
            else:
                line.append(
                    f"   pulls from {pull.registry}, UNSIGNED offers accepted (no registry_key)", "yellow"
                )
        if not listing.versions:
            line.append("   nothing stored yet: p pushes a model file", style="bold")
        self.query_one("#serving", Static).update(line)
        self._fill_versions(listing.versions, listing.damaged)
        history = self.query_one("#history", DataTable)
        history.clear()
        for h in listing.history:
            history.add_row(
                stamp(h.ts),
                h.action,
                h.version or "-",
                h.previous or "-",
                Text(h.outcome, style=OUTCOME_STYLE.get(h.outcome, "")),
                h.reason or "",
            )

    def _fill_versions(self, versions: list[ModelVersion], damaged: list[DamagedVersion] = ()) -> None:
        table = self.query_one("#versions", DataTable)
        keep = self.selected()
        table.clear()
        for v in versions:
            m = v.manifest
            mark = Text("●", style="bold green") if v.serving else Text("○" if v.current else " ")
            state = Text(v.state, style="green" if v.serving else "yellow" if v.state == "probation" else "")
            if v.last_good and not v.serving:
                state.append(" · rollback target", style="dim")
            verdict = Text(v.verdict.replace("_", " "), style=VERDICT_STYLE.get(v.verdict, "dim"))
            table.add_row(
                mark,
                v.version,
                state,
                verdict,
                size_text(m.size),
                m.sha256[:12],
                stamp(m.created),
                m.format,
                m.layout,
                key=v.version,
            )
        for d in damaged:  # never loaded; d deletes it (prune does too)
            table.add_row(
                " ", d.version, Text("damaged", style="bold red"), "-", "-", "-", "-", d.reason, key=d.version
            )
        if keep is not None and keep in {v.version for v in versions} | {d.version for d in damaged}:
            table.move_cursor(row=table.get_row_index(keep))

    def selected(self) -> str | None:
        table = self.query_one("#versions", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    # --- progress -----------------------------------------------------------------------------------

    def _progress(self, step: PushProgress) -> None:
        # Called by the push service inside the worker (on the event loop): only a message, no widget.
        self.post_message(self.StepMade(step))

    @on(StepMade)
    def _step(self, message: StepMade) -> None:
        step = self.last_step = message.step
        bar = self.query_one("#bar", ProgressBar)
        if step.total:
            bar.update(total=step.total, progress=step.done)
        else:
            bar.update(total=None)  # an activation stage of unknown length: the bar pulses
        self.query_one("#stage", Static).update(step_text(step))

    def _start(self, label: str) -> bool:
        if self.busy:
            self.notify("one change at a time: wait for the current one to end", severity="warning")
            return False
        self.busy = True
        self.query_one("#progress").add_class("-shown")
        self.query_one("#stage", Static).update(label)
        self.query_one("#bar", ProgressBar).update(total=None, progress=0)
        return True

    @on(StoreChanged)
    def _changed(self, message: StoreChanged) -> None:
        self.busy = False
        self.query_one("#progress").remove_class("-shown")
        severity = "information" if message.ok else "error"
        self.notify(message.text, title=message.title, severity=severity, timeout=6 if message.ok else 15)
        self.reload()

    def _job_text(self, what: str, job: Job) -> tuple[str, bool]:
        if job.state == "succeeded":
            result = job.result or {}
            if job.kind == "model.rollback" and "version" in result:
                target = result.get("version") or "the configured model"
                return (
                    f"rolled back to {target} (was {result.get('previous') or 'the configured model'})",
                    True,
                )
            return f"{what}: done", True
        return f"{what} {job.state}: {job.error or job.stage or 'no reason given'}", False

    # --- push ---------------------------------------------------------------------------------------

    def action_push(self) -> None:
        from screens.push_dialog import PushDialog, PushRequest

        def answered(request: PushRequest | None) -> None:
            if request is not None and self._start(f"pushing {request.path.name} as {request.version}…"):
                self.push(request.path, request.version, request.activate)

        self.app.push_screen(PushDialog(), answered)

    @work(exclusive=True, exit_on_error=False, group="store")
    async def push(self, path: Path, version: str, activate: bool) -> None:
        # The push service uploads; the activation is followed here from the SSE stream, like the others.
        try:
            result = await self.push_service(
                self.api,
                path,
                version,
                activate=False,
                on_progress=self._progress,
                job_timeout=self.job_timeout,
            )
            activation = None
            if activate and await self._retry_confirmed(result.version):
                force = result.version.verdict in BAD_VERDICTS
                activation = await self._follow(
                    await self.api.activate_model(version, force=force), "activating"
                )
        except (AgentClientError, ConsoleError) as err:
            self.post_message(self.StoreChanged("Push failed", str(err), False))
            return
        text = f"{version} stored" if result.uploaded else f"{version} was already on the device (same bytes)"
        ok = True
        if activate and activation is None:
            text += f"; not activated ({result.version.verdict.replace('_', ' ')} before)"
        if activation is not None:
            outcome, ok = self._job_text(f"activation of {version}", activation)
            text += f"; {outcome}"
        self.post_message(self.StoreChanged("Push", text, ok))

    async def _retry_confirmed(self, entry: ModelVersion) -> bool:
        """True unless ``entry`` failed before and the technician, told why, declines to try it again."""
        if entry.verdict not in BAD_VERDICTS:
            return True
        question, detail = self._retry_question(entry)
        return bool(await self.app.push_screen_wait(ConfirmDialog(question, "Activate anyway", detail)))

    def _retry_question(self, entry: ModelVersion) -> tuple[str, str]:
        how = entry.verdict.replace("_", " ")
        question = f"{entry.version} {how} before. Activate it again on {self.record.name}?"
        return question, f"Why it {how}: {entry.verdict_reason or 'no reason recorded'}"

    async def _follow(self, job: Job, phase: str) -> Job:
        """A store job to its end from the agent's SSE ``job`` events, each change a StepMade."""

        def moved(j: Job) -> None:
            self._progress(PushProgress(phase, int(j.progress * 100), 100, j.stage))

        return await watch_job(self.api, job, on_update=moved, timeout=self.job_timeout)

    # --- activate, rollback, delete -----------------------------------------------------------------

    def action_activate(self) -> None:
        version = self.selected()
        if version is None:
            return
        entry = self._entry(version)
        if entry is not None and entry.verdict in BAD_VERDICTS:
            # A version that failed before is tried again only on purpose, knowing why it failed.
            def answered(yes: bool | None) -> None:
                if yes and self._start(f"activating {version} again…"):
                    self.run_job(f"activation of {version}", "activating", version, force=True)

            question, detail = self._retry_question(entry)
            self.app.push_screen(ConfirmDialog(question, "Activate anyway", detail), answered)
            return
        if self._start(f"activating {version}…"):
            self.run_job(f"activation of {version}", "activating", version)

    def _entry(self, version: str) -> ModelVersion | None:
        versions = self.listing.versions if self.listing is not None else []
        return next((v for v in versions if v.version == version), None)

    def action_rollback(self) -> None:
        if self.listing is None:
            return
        plan = self.listing.rollback
        serving = self.listing.serving.version if self.listing.serving else None
        if plan is None:  # the agent would answer 409: say why instead of offering it
            self.notify(
                f"nothing to roll back to: {serving or 'the configured model'} serves and no other "
                "version has passed probation",
                severity="warning",
                timeout=8,
            )
            return

        def answered(yes: bool | None) -> None:
            if yes and self._start(f"rolling back to {plan.label}…"):
                self.run_job("rollback", "rolling back", None)

        question = f"Roll {self.record.name} back from {serving or 'the configured model'} to {plan.label}?"
        detail = (
            f"{plan.label}: {plan.why}. The pipeline swaps models between frames; the history records it."
        )
        self.app.push_screen(ConfirmDialog(question, "Roll back", detail), answered)

    @work(exclusive=True, exit_on_error=False, group="store")
    async def run_job(self, what: str, phase: str, version: str | None, force: bool = False) -> None:
        """Start an activation (``version``) or a rollback (None) and follow its job to the end."""
        try:
            job = await (
                self.api.activate_model(version, force=force) if version else self.api.rollback_model()
            )
            job = await self._follow(job, phase)
        except AgentClientError as err:
            self.post_message(self.StoreChanged(what.capitalize(), str(err), False))
            return
        text, ok = self._job_text(what, job)
        self.post_message(self.StoreChanged(what.capitalize(), text, ok))

    def action_delete(self) -> None:
        version = self.selected()
        if version is None or self.listing is None:
            return
        entry = next((v for v in self.listing.versions if v.version == version), None)
        if entry is not None and (entry.serving or entry.current):
            self.notify(
                f"{version} is the active model: activate another version first",
                severity="warning",
                timeout=6,
            )
            return

        def answered(yes: bool | None) -> None:
            if yes and self._start(f"deleting {version}…"):
                self.delete(version)

        detail = "Its file and manifest are removed from the device; the history keeps a line about it."
        self.app.push_screen(
            ConfirmDialog(f"Delete {version} from {self.record.name}?", "Delete", detail), answered
        )

    @work(exclusive=True, exit_on_error=False, group="store")
    async def delete(self, version: str) -> None:
        try:
            await self.api.remove_model(version)
        except AgentClientError as err:
            self.post_message(self.StoreChanged("Delete failed", str(err), False))
            return
        self.post_message(self.StoreChanged("Delete", f"{version} deleted", True))

    def commands(self) -> list[SystemCommand]:
        name = self.record.name
        return [
            SystemCommand(
                "Push a model file", f"hash, upload and maybe activate on {name}", self.action_push
            ),
            SystemCommand(
                "Activate selected model", "swap the pipeline to the selected version", self.action_activate
            ),
            SystemCommand(
                "Roll back the model", f"back to {name}'s last good model (asks first)", self.action_rollback
            ),
            SystemCommand(
                "Delete selected model",
                "remove a version that is not active (asks first)",
                self.action_delete,
            ),
            SystemCommand("Reload models", "read the store again", self.action_reload),
        ]
