"""A device's engines: what each was built with and for, which are stale and why; rebuild one.

The screen takes the device's API (``engines()``, ``rebuild_engine(request)``, ``job(id)``,
``events()``). The table lists ``GET /v1/engines`` with each fingerprint's fields and a STALE badge; the
line under it gives the selected engine's full reason. Above it, the runtimes of this device
(:class:`~fieldtui.protocol.RuntimeIdentity`): what a fresh engine's fingerprint would carry, and
whether the device can build for it. ``r`` asks for a rebuild (runtime, precision, calibration frames,
activate; activating asks once more), then the job is followed from the SSE stream
(:func:`fieldtui.jobwatch.watch_job`): a bar, the stage, a log of every stage, and at the end the result
(size, p50 against FP32, speedup, agreement F1).
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Log, Static

from fieldtui.protocol import EngineInfo, EngineList, EngineRebuildRequest, EngineRebuildResult, Job
from screens.dialogs import ConfirmDialog
from screens.jobscreen import JobScreen
from screens.models import size_text  # one wording of file sizes across the console
from screens.replies import Reply, read_reply
from screens.timefmt import clock_time
from screens.widgets.footer import Footer
from screens.widgets.jobprogress import JobProgress


def runtime_lines(listing: EngineList) -> Text:
    """One line per runtime: version, device, compute, and whether this device can build for it."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, r in enumerate(listing.runtimes):
        if i:
            text.append("\n")
        text.append(f"{r.runtime:<12}", style="bold" if r.available else "dim")
        if not r.available:
            text.append(f"not available: {r.reason}", style="dim")
            continue
        found = "  ".join(x for x in (r.runtime_version, r.device, r.compute and f"({r.compute})") if x)
        text.append(f"{found:<36} ")
        if r.can_build:
            text.append("✓ builds engines here", style="green")
        else:
            text.append(f"✗ {r.build_note or 'cannot build here'}", style="yellow")
    return text


def result_text(result: EngineRebuildResult) -> Text:
    """What the rebuild changed: size, speed against FP32, and how far the detections still agree."""
    text = Text()
    change = (result.size - result.source_size) / result.source_size * 100 if result.source_size else None
    text.append("size ", style="dim")
    text.append(f"{size_text(result.source_size)} → {size_text(result.size)}")
    if change is not None:
        text.append(f" ({change:+.0f}%)", style="green" if change < 0 else "yellow")
    if result.p50_ms is not None:
        text.append("   p50 ", style="dim")
        text.append(f"{result.p50_ms:.1f} ms")
        if result.fp32_p50_ms is not None:
            text.append(f" vs fp32 {result.fp32_p50_ms:.1f} ms", style="dim")
    if result.speedup is not None:
        text.append("   ")
        text.append(
            f"{result.speedup:.2f}× {'faster' if result.speedup >= 1 else 'as fast'}",
            style="bold green" if result.speedup >= 1 else "bold red",
        )
    if result.agreement_f1 is not None:
        text.append("   agreement F1 ", style="dim")
        ok = result.agreement_f1 >= 0.9
        text.append(f"{result.agreement_f1:.2f}", style="green" if ok else "bold red")
        text.append(f" on {result.agreement_frames} frames", style="dim")
    text.append("\n")
    built = [f"{result.engine.key}", f"{result.elapsed_s:.0f} s"]
    if result.calibration_frames:
        built.append(f"calibrated on {result.calibration_frames} frames")
    if result.model_version:
        built.append(f"added to the store as {result.model_version}")
    if result.activation_job:
        built.append(f"activation job {result.activation_job[:8]}")
    text.append("   ".join(built), style="dim")
    return text


class EnginesScreen(JobScreen):
    CSS_PATH = "engines.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "rebuild", "Rebuild"),
        Binding("g", "reload", "Reload"),
        Binding("ctrl+x", "cancel", "Cancel rebuild"),
    ]

    class Listed(Reply[EngineList]):
        """``GET /v1/engines`` answered."""

    class RebuildFinished(Reply[EngineRebuildResult]):
        """The rebuild job ended: the result, or why there is none."""

    JOB_NOUN = "rebuild"
    COALESCE_MOVES = False  # every stage belongs in the log

    def __init__(self, api: Any, record: Any, *, job_timeout: float = 1800.0) -> None:
        super().__init__(api, record, job_timeout=job_timeout)
        self.listing: EngineList | None = None
        self.result: EngineRebuildResult | None = None
        self._stage = ""

    def _now(self) -> str:
        return clock_time(getattr(self.app, "clock", time.time)())

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="runtimes")
        yield DataTable(id="engines", cursor_type="row", zebra_stripes=True)
        yield Static(id="detail")
        yield JobProgress(id="progress")
        with Vertical(id="rebuild"):
            yield Static(id="result")
            yield Log(id="log", max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.record.name}: engines"
        for selector, title in (
            ("#runtimes", "runtimes on this device"),
            ("#engines", "engines"),
            ("#rebuild", "rebuild"),
        ):
            self.query_one(selector).border_title = title
        self.query_one("#engines", DataTable).add_columns(
            "state",
            "runtime",
            "prec",
            "built with",
            "device",
            "compute",
            "input",
            "from",
            "size",
            "built",
            "p50 ms",
            "F1",
        )
        self.query_one("#runtimes", Static).update(Text("reading the engines…", style="dim"))
        self.query_one(JobProgress).idle("r rebuilds an engine from the serving model")
        self.reload()

    # --- listing ------------------------------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="list")
    async def reload(self) -> None:
        await read_reply(self, self.Listed, self.api.engines())

    def action_reload(self) -> None:
        self.reload()

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        if message.value is None:
            self.query_one("#runtimes", Static).update(Text(f"✗ {message.error}", style="red"))
            return
        self.listing = listing = message.value
        self.query_one("#runtimes", Static).update(runtime_lines(listing))
        table = self.query_one("#engines", DataTable)
        keep = self.selected()
        table.clear()
        for e in listing.engines:
            fp = e.fingerprint
            state = Text(" STALE ", style="bold white on red") if e.stale else Text("ok", style="green")
            source = e.source_version or fp.source_sha256[:12]
            table.add_row(
                state,
                fp.runtime,
                fp.precision,
                fp.runtime_version or "-",
                fp.device or "-",
                fp.compute or "-",
                "x".join(map(str, fp.input_shape)),
                source,
                size_text(e.size),
                time.strftime("%m-%d %H:%M", time.localtime(fp.built)) if fp.built else "-",
                "-" if e.p50_ms is None else f"{e.p50_ms:.1f}",
                "-" if e.agreement_f1 is None else f"{e.agreement_f1:.2f}",
                key=e.key,
            )
        if not listing.engines:
            self.query_one("#detail", Static).update(
                Text("no engines built yet: r builds one from the serving model", style="bold")
            )
        elif keep is not None and keep in {e.key for e in listing.engines}:
            table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def selected(self) -> str | None:
        table = self.query_one("#engines", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def selected_engine(self) -> EngineInfo | None:
        key = self.selected()
        return next((e for e in (self.listing.engines if self.listing else []) if e.key == key), None)

    @on(DataTable.RowHighlighted, "#engines")
    def _show_detail(self) -> None:
        engine = self.selected_engine()
        if engine is None:
            return
        text = Text.assemble((engine.key, "bold"), "  ", (engine.file, "dim"))
        if engine.stale:
            text.append(
                f"\nstale: {engine.stale_reason or 'built for another runtime or device'}", style="red"
            )
        else:
            speed = ""
            if engine.p50_ms and engine.fp32_p50_ms:
                speed = f", {engine.fp32_p50_ms / engine.p50_ms:.2f}× the fp32 speed"
            text.append(f"\nloads on this device{speed}", style="green")
        self.query_one("#detail", Static).update(text)

    # --- rebuild ------------------------------------------------------------------------------------

    def action_rebuild(self) -> None:
        from screens.rebuild_dialog import RebuildDialog

        if self.running:
            self.notify("a rebuild is running: wait for it, or ctrl+x cancels it", severity="warning")
            return
        if self.listing is None:
            return
        engine = self.selected_engine()
        backend = engine.fingerprint.runtime if engine else None
        precision = engine.fingerprint.precision if engine else "int8"

        def answered(request: EngineRebuildRequest | None) -> None:
            if request is None:
                return
            if not request.activate:
                self._start(request)
                return
            question = (
                f"Build a {request.backend} {request.precision} engine and activate it on {self.record.name}?"
            )
            detail = "It is health-checked on live frames first; the model store keeps the current model to roll back to."
            self.app.push_screen(
                ConfirmDialog(question, "Build and activate", detail),
                lambda yes: self._start(request) if yes else None,
            )

        self.app.push_screen(RebuildDialog(self.listing.runtimes, backend, precision), answered)

    def _start(self, request: EngineRebuildRequest) -> None:
        self.running, self.result, self._stage = True, None, ""
        log = self.query_one("#log", Log)
        log.clear()
        what = f"{request.backend} {request.precision}" + (", then activate" if request.activate else "")
        log.write_line(f"{self._now()}  rebuild requested: {what}")
        self.query_one("#result", Static).update("")
        self.query_one(JobProgress).start(f"starting the {what} rebuild…")
        self.follow_job(self.api.rebuild_engine(request), self.RebuildFinished, EngineRebuildResult)

    def job_moved(self, job: Job) -> None:
        if job.stage and job.stage != self._stage:
            self._stage = job.stage
            self.query_one("#log", Log).write_line(f"{self._now()}  {job.progress:>4.0%}  {job.stage}")

    @on(RebuildFinished)
    def _finished(self, message: RebuildFinished) -> None:
        self.running, self.job = False, None
        log, progress = self.query_one("#log", Log), self.query_one(JobProgress)
        if message.value is None:
            progress.failed(message.error or "")
            log.write_line(f"{self._now()}  failed: {message.error}")
            self.notify(message.error or "", title="Rebuild failed", severity="error", timeout=15)
            self.reload()
            return
        self.result = result = message.value
        for line in result.log:
            if line != self._stage:
                log.write_line(f"          build: {line}")
        log.write_line(f"{self._now()}  done in {result.elapsed_s:.0f} s")
        progress.done(f"built {result.engine.key}")
        self.query_one("#result", Static).update(result_text(result))
        self.reload()

    def commands(self) -> list[SystemCommand]:
        return [
            SystemCommand("Rebuild engine", "build an engine from the serving model", self.action_rebuild),
            SystemCommand("Cancel rebuild", "stop the running engine build", self.action_cancel),
            SystemCommand("Reload engines", "read the engines again", self.action_reload),
        ]
