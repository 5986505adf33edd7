"""On-device benchmarks: choose configurations, run, watch the progress, compare with the previous run.

The screen takes the device's API (an :class:`~fieldtui.client.AgentClient` or a fake with its methods).
Backends come from ``GET /v1/device`` (those the device cannot run are listed, disabled, so the
technician sees why a configuration is missing). A run is ``POST /v1/benchmarks``; its job is followed
by :func:`fieldtui.jobwatch.watch_job` from the SSE stream, each change a coalescing ``JobMoved``; it
ends in ``BenchmarkFinished`` with the run, shown as a table (each configuration against the previous
run of the same configuration and model: verdict, p50 and FPS change) and as bars across
configurations. History (``GET /v1/benchmarks``) is below; enter on a past run shows it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Header, Input, Static
from textual.widgets.selection_list import Selection

from fieldtui.protocol import BenchmarkList, BenchmarkRequest, BenchmarkResult, BenchmarkRun, DeviceInfo
from fieldtui.protocol.bench import agreement_label, comparison_text, verdict_of, with_console_hint
from screens.jobscreen import JobScreen
from screens.replies import Reply, read_reply
from screens.timefmt import date_time
from screens.widgets.configbars import ConfigBars, config_label
from screens.widgets.footer import Footer
from screens.widgets.jobprogress import JobProgress
from screens.widgets.toggles import SelectionList

PRECISIONS = ("fp32", "fp16", "int8")
VERDICT_STYLE = {"better": "green", "worse": "red", "same": "dim"}


def parse_numbers(text: str, *, default_word: str | None = None) -> list[int | None]:
    """``"default, 1, 4"`` -> ``[None, 1, 4]``; ValueError naming the bad item."""
    out: list[int | None] = []
    for item in text.replace(" ", ",").split(","):
        item = item.strip().lower()
        if not item:
            continue
        if default_word is not None and item in (default_word, "-"):
            out.append(None)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise ValueError(item)
    return list(dict.fromkeys(out))


def versus(r: BenchmarkResult, host: str | None = None) -> Text:
    """The comparison with the previous run of this configuration, in words and colour (the words of
    ``fieldtui bench``); a skipped row says how to act from this console."""
    c = r.comparison
    if r.status != "ok":
        reason = with_console_hint(r.reason, host)
        return Text(f"{r.status}: {reason}", style="yellow" if r.status == "skipped" else "red")
    if c is None:
        return Text("first run", style="dim")
    return Text(comparison_text(c), style=VERDICT_STYLE[verdict_of(c)])


def heat(r: BenchmarkResult) -> str:
    """The hottest thermal zone at the end of the run (°C), and ``throttled`` when the device said so."""
    s = r.system
    if s is None or s.temperature_c is None:
        return "-" if s is None or not s.throttled else "throttled"
    return f"{s.temperature_c:.0f}{' throttled' if s.throttled else ''}"


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class BenchmarkScreen(JobScreen):
    CSS_PATH = "benchmark.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+r", "run", "Run", priority=True),
        Binding("ctrl+x", "cancel", "Cancel run"),
        Binding("ctrl+g", "reload", "Reload history"),
    ]

    class DeviceRead(Reply[DeviceInfo]):
        """``GET /v1/device`` answered: the backends to offer."""

    class HistoryRead(Reply[BenchmarkList]):
        """``GET /v1/benchmarks`` answered."""

    class BenchmarkFinished(Reply[BenchmarkRun]):
        """The benchmark job ended: the run, or why there is none."""

    JOB_NOUN = "benchmark"

    def __init__(self, api: Any, record: Any, *, job_timeout: float = 900.0) -> None:
        super().__init__(api, record, job_timeout=job_timeout)
        self.device: DeviceInfo | None = None
        self.history: BenchmarkList | None = None
        self.shown: BenchmarkRun | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="form"):
            yield SelectionList[str](id="backends")
            yield SelectionList[str](*(Selection(p, p, p == "fp32") for p in PRECISIONS), id="precisions")
            with Vertical(id="numbers"):
                with Horizontal():
                    yield Input("default", id="threads")
                    yield Input("1", id="batches")
                    yield Input("50", id="iterations")
                yield Static(id="error")
            yield Button("Run\n(ctrl+r)", variant="primary", id="run")
        yield JobProgress(id="progress")
        yield DataTable(id="results", cursor_type="none", zebra_stripes=True)
        yield ConfigBars(id="chart")
        yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.record.name}: benchmark"
        titles = {
            "#backends": "backends",
            "#precisions": "precisions",
            "#threads": "threads",
            "#batches": "batch sizes",
            "#iterations": "iterations",
            "#results": "results",
            "#chart": "across configurations",
            "#history": "history (newest first, enter shows a run)",
        }
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.query_one("#results", DataTable).add_columns(
            "configuration",
            "p50 ms",
            "p99 ms",
            "ms/frame",
            "fps",
            "cpu %",
            "rss MB",
            "°C",
            "F1",
            "vs previous run",
        )
        self.query_one("#history", DataTable).add_columns(
            "when", "model", "configurations", "best", "verdicts"
        )
        self.query_one(JobProgress).idle("reading the device's backends…")
        self.query_one("#chart", ConfigBars).show([])
        self.query_one("#backends").focus()
        self.read_device()
        self.reload()

    # --- reading ------------------------------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="device")
    async def read_device(self) -> None:
        await read_reply(self, self.DeviceRead, self.api.device())

    @on(DeviceRead)
    def _device_read(self, message: DeviceRead) -> None:
        progress = self.query_one(JobProgress)
        if message.value is None:
            progress.failed(message.error or "")
            return
        self.device = device = message.value
        backends = self.query_one("#backends", SelectionList)
        backends.clear_options()
        for b in device.backends or []:
            label = b.key if b.available else f"{b.key} (not here)"
            backends.add_option(
                Selection(label, b.key, b.available and b.key == "onnxruntime", disabled=not b.available)
            )
        if not device.backends:
            backends.add_option(Selection("onnxruntime", "onnxruntime", True))
        progress.idle("choose configurations, then ctrl+r runs them")

    @work(exclusive=True, exit_on_error=False, group="history")
    async def reload(self) -> None:
        await read_reply(self, self.HistoryRead, self.api.benchmarks(limit=50))

    def action_reload(self) -> None:
        self.reload()

    @on(HistoryRead)
    def _history_read(self, message: HistoryRead) -> None:
        table = self.query_one("#history", DataTable)
        if message.value is None:
            table.border_subtitle = f"✗ {message.error}"
            return
        table.border_subtitle = ""
        self.history = history = message.value
        table.clear()
        for run in history.runs:
            ok = [r for r in run.results if r.status == "ok" and r.fps]
            best = max(ok, key=lambda r: r.fps or 0, default=None)
            verdicts = [verdict_of(r.comparison) for r in run.results if r.comparison is not None]
            summary = ", ".join(
                f"{verdicts.count(v)} {v}" for v in ("better", "worse", "same") if v in verdicts
            )
            table.add_row(
                date_time(run.created),
                run.model,
                str(len(run.results)),
                f"{config_label(best.config)}  {best.fps:.1f} fps" if best else "-",
                summary or "first run",
                key=run.id,
            )
        if not history.runs:
            table.border_subtitle = "no runs yet on this device"
        if self.shown is None and history.runs:
            self.show_run(history.runs[0])

    @on(DataTable.RowSelected, "#history")
    def _history_selected(self, event: DataTable.RowSelected) -> None:
        run = next(
            (r for r in (self.history.runs if self.history else []) if r.id == event.row_key.value), None
        )
        if run is not None:
            self.show_run(run)

    def show_run(self, run: BenchmarkRun) -> None:
        self.shown = run
        table = self.query_one("#results", DataTable)
        table.border_title = f"results: {run.model} at {date_time(run.created)} (run {run.id[:8]})"
        table.clear()
        for r in run.results:
            lat, system = r.latency, r.system
            table.add_row(
                config_label(r.config),
                _f(lat.p50_ms if lat else None, ".2f"),
                _f(lat.p99_ms if lat else None, ".2f"),
                _f(r.per_frame_ms, ".2f"),
                _f(r.fps, ".1f"),
                _f(system.cpu_percent if system else None, ".0f"),
                _f(system.rss_mb if system else None, ".0f"),
                heat(r),
                agreement_label(r),
                versus(r, getattr(self.record, "name", None)),
            )
        self.query_one("#chart", ConfigBars).show(run.results)

    # --- running ------------------------------------------------------------------------------------

    def request(self) -> BenchmarkRequest:
        """The form as a request; ValueError with the one line to show otherwise."""
        backends = list(self.query_one("#backends", SelectionList).selected)
        precisions = list(self.query_one("#precisions", SelectionList).selected)
        if not backends:
            raise ValueError("choose at least one backend (space toggles)")
        if not precisions:
            raise ValueError("choose at least one precision (space toggles)")
        try:
            threads = parse_numbers(self.query_one("#threads", Input).value, default_word="default")
        except ValueError as err:
            raise ValueError(f"threads: {err} is not a count; e.g. default, 1, 4") from None
        try:
            batches = parse_numbers(self.query_one("#batches", Input).value)
            iterations = parse_numbers(self.query_one("#iterations", Input).value)
        except ValueError as err:
            raise ValueError(f"{err} is not a positive whole number") from None
        try:
            return BenchmarkRequest(
                backends=backends,
                precisions=precisions,
                threads=threads or [None],
                batch_sizes=batches or [1],
                iterations=iterations[0] if iterations else 50,
            )
        except ValidationError as err:
            first = err.errors()[0]
            raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    @on(Button.Pressed, "#run")
    @on(Input.Submitted)
    def action_run(self) -> None:
        error = self.query_one("#error", Static)
        if self.running:
            self.notify("a benchmark is running: wait for it, or ctrl+x cancels it", severity="warning")
            return
        try:
            request = self.request()
        except ValueError as err:
            error.update(Text(str(err), style="red"))
            return
        error.update("")
        self.running = True
        n = len(request.backends) * len(request.precisions) * len(request.threads) * len(request.batch_sizes)
        self.query_one(JobProgress).start(f"starting {n} configuration{'s' * (n != 1)}…")
        self.follow_job(self.api.start_benchmark(request), self.BenchmarkFinished, BenchmarkRun)

    @on(BenchmarkFinished)
    def _finished(self, message: BenchmarkFinished) -> None:
        self.running = False
        self.job = None
        progress = self.query_one(JobProgress)
        run = message.value
        if run is None:
            progress.failed(message.error or "")
            self.notify(message.error or "", title="Benchmark failed", severity="error", timeout=15)
            return
        ok = sum(r.status == "ok" for r in run.results)
        progress.done(f"done: {ok} of {len(run.results)} configurations measured")
        self.show_run(run)
        self.reload()

    def commands(self) -> list[SystemCommand]:
        return [
            SystemCommand(
                "Run benchmark", "measure the chosen configurations on the device", self.action_run
            ),
            SystemCommand("Cancel benchmark", "stop the running benchmark on the device", self.action_cancel),
            SystemCommand("Reload benchmark history", "read past runs again", self.action_reload),
        ]
