"""The device list: every agent found over mDNS, saved, or added by hand, with how each one is doing.

Each reachable device is probed in a worker (health, then status): a few at a time, every
``POLL_EVERY_S`` while it answers, backing off to ``POLL_MAX_S`` while it does not. A device that goes
away stays listed, dimmed, as "lost 2m ago": the technician must see that the camera at gate 3 vanished.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from fieldtui.config import SavedDevice, device_key
from fieldtui.errors import AgentClientError, ConsoleError
from fieldtui.fleet import Added, Probe
from fieldtui.protocol import DeviceRecord
from fieldtui.protocol.cameras import camera_note
from screens.dialogs import ConfirmDialog
from screens.timefmt import ago
from screens.widgets.footer import NARROW, Footer

POLL_EVERY_S = 2.0
POLL_MAX_S = 30.0
POLL_CONCURRENCY = 4
COLUMNS = ("NAME", "ADDRESS", "LINK", "BACKEND", "MODEL", "HEALTH", "FPS", "P95 MS", "SEEN")
# around the row's own cells: the rollout mark (space; a box, not a colour) and the saved tags
TABLE_COLUMNS = ("MARK", *COLUMNS, "TAGS")
# Under NARROW columns (80x24) these give way, so the rest fits without scrolling sideways; the line under
# the table still gives the selected device's link, and the dashboard its figures.
NARROW_HIDDEN = frozenset({"LINK", "BACKEND", "P95 MS", "SEEN"})


def columns_for(width: int) -> tuple[str, ...]:
    """The device list's columns at a terminal ``width`` columns wide."""
    return tuple(c for c in TABLE_COLUMNS if width >= NARROW or c not in NARROW_HIDDEN)


HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "failing": "bold red"}


def link_label(record: DeviceRecord) -> str:
    if "ssh" in record.origin and not record.addresses:
        return "SSH"
    if record.tls:
        return "HTTPS" if record.tls_fingerprint else "HTTPS ?"
    return "HTTP"


@dataclass
class DeviceRow:
    """What the list knows of one device: its record and the last probe."""

    record: DeviceRecord
    probe: Probe | None = None
    error: str | None = None
    last_ok: float | None = None  # wall-clock time of the last answer

    def lost_since(self) -> float | None:
        """When it was last seen, if it is gone (mDNS says so, or it stopped answering)."""
        seen = max(filter(None, (self.last_ok, self.record.last_seen)), default=None)
        gone = self.record.lost or (self.error is not None and self.last_ok is not None)
        return seen if gone else None

    def cells(self, now: float) -> list[Text]:
        r, p = self.record, self.probe
        status = p.status if p is not None else None
        sample = status.sample if status is not None else None
        model = status.model if status is not None else None
        lost = self.lost_since()
        if lost is not None:
            health = Text(f"lost {ago(now - lost)} ago", style="italic")
        elif self.error is not None:
            health = Text("unreachable", style="red")
        elif p is None:
            health = Text("checking…", style="dim")
        elif status is None:
            health = Text(f"{p.health.status}, not paired", style="yellow")
        else:
            health = Text(p.health.status, style=HEALTH_STYLE.get(p.health.status, ""))
            if note := camera_note(p.cameras):  # several cameras: "3 cameras, 1 unhealthy"
                health.append(f" · {note}", style="yellow" if "unhealthy" in note else "")
        model_name = (model.version or model.path.rsplit("/", 1)[-1]) if model else r.model
        address = Text(f"{r.host}:{r.port}")
        if "probe" in r.origin:
            address.append(" (probe)", style="dim")  # found by sweeping a subnet, not over mDNS
        values = [
            Text(r.name, style="bold"),
            address,
            Text(link_label(r), style="green" if r.tls and r.tls_fingerprint else ""),
            Text((model.backend if model else r.backend) or "-"),
            Text(model_name or "-"),
            health,
            Text(f"{sample.fps:.1f}" if sample else "-", justify="right"),
            Text(f"{sample.latency_p95_ms:.1f}" if sample else "-", justify="right"),
            Text(ago(now - self.last_ok) + " ago" if self.last_ok else "-", style="dim"),
        ]
        if lost is not None:
            for cell in values:
                cell.stylize("dim")
        return values

    def matches(self, needle: str) -> bool:
        r = self.record
        hay = " ".join(filter(None, (r.name, r.host, r.id, r.model, r.backend, *r.addresses)))
        return needle.casefold() in hay.casefold()


def saved_tags(fleet: Any) -> dict[str, list[str]]:
    """Device key -> tags of the saved devices (``fieldtui tag HOST a,b``); none from a fake fleet."""
    config = getattr(fleet, "config", None)
    try:
        return {e.key: list(e.tags) for e in config.load()} if config is not None else {}
    except ConsoleError:  # a damaged config: reload() already says why the list is empty
        return {}


class DevicesScreen(Screen[None]):
    """See the module docstring. Takes the :class:`~fieldtui.fleet.Fleet` (or a fake one) to ask."""

    CSS_PATH = "devices.tcss"
    AUTO_FOCUS = "#devices"
    TITLE = "fieldtui"
    SUB_TITLE = "devices"
    BINDINGS = [
        Binding("enter", "open", "Open", priority=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("a", "add", "Add"),
        Binding("p", "pair", "Pair"),
        Binding("x", "forget", "Forget"),
        Binding("s", "probe_subnet", "Probe subnet"),
        Binding("w", "write_report", "Report"),
        Binding("r", "refresh", "Refresh"),
        Binding("space", "mark", "Mark"),
        Binding("R", "rollout", "Rollout", key_display="R"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    class Polled(Message):
        """A probe finished: ``probe`` or ``error`` for the device ``key``."""

        def __init__(self, key: str, probe: Probe | None, error: str | None) -> None:
            super().__init__()
            self.key, self.probe, self.error = key, probe, error

    class Swept(Message):
        """A subnet probe finished: ``summary`` to tell, or ``error``."""

        def __init__(self, summary: str | None, error: str | None = None) -> None:
            super().__init__()
            self.summary, self.error = summary, error

    class ReportWritten(Message):
        """The visit report is written at ``path`` (``summary`` says what is in it), or ``error``."""

        def __init__(self, path: Path | None, summary: str = "", error: str | None = None) -> None:
            super().__init__()
            self.path, self.summary, self.error = path, summary, error

    class FleetChanged(Message):
        """mDNS saw a device appear, change or go; only the newest matters."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, DevicesScreen.FleetChanged)

    def __init__(self, fleet: Any) -> None:
        super().__init__()
        self.fleet = fleet
        self.rows: dict[str, DeviceRow] = {}
        self.filter_text = ""
        self.load_error: str | None = None
        self.report_dir = Path.cwd()  # where `w` writes the visit report (tests point it elsewhere)
        self.marked: set[str] = set()  # device keys marked with space, for a rollout (R)
        self.tags: dict[str, list[str]] = {}  # device key -> the saved device's tags
        self.shown_columns: tuple[str, ...] = TABLE_COLUMNS  # fewer in a narrow terminal (columns_for)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: name, address, model, backend, tag", id="filter")
        yield DataTable(id="devices", cursor_type="row", zebra_stripes=True)
        yield Static(id="empty")
        yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.set_columns(columns_for(self.app.size.width))
        self.reload()
        self.set_interval(5.0, self.render_rows)  # "lost 2m ago" keeps ageing between probes

    def set_columns(self, columns: tuple[str, ...]) -> None:
        """Show these columns (rows are added again by the next render)."""
        self.shown_columns = columns
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for label in columns:
            table.add_column("" if label == "MARK" else label, key=label)

    def on_resize(self, event: events.Resize) -> None:
        columns = columns_for(event.size.width)
        if columns != self.shown_columns:
            self.set_columns(columns)
            self.render_rows()

    def on_screen_resume(self) -> None:
        self.reload()
        self.call_after_refresh(self.poll_devices)  # the list first, the probes right after

    def on_screen_suspend(self) -> None:
        # Nobody looks at the list under a dashboard or a form: don't keep probing the fleet.
        self.workers.cancel_group(self, "poll")

    def clock(self) -> float:
        return getattr(self.app, "clock", time.time)()

    # --- data ---------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the fleet's devices (keeping what the probes said)."""
        try:
            records, self.load_error = self.fleet.devices(), None
        except ConsoleError as err:  # a damaged config: the list says why it is empty
            records, self.load_error = [], str(err)
        fresh: dict[str, DeviceRow] = {}
        for record in records:
            key = device_key(record)
            row = self.rows.get(key) or DeviceRow(record)
            row.record = record
            fresh[key] = row
        self.rows = fresh
        self.marked &= fresh.keys()
        self.tags = saved_tags(self.fleet)
        self.render_rows()

    def on_devices_screen_fleet_changed(self) -> None:
        self.reload()

    @on(Polled)
    def _polled(self, message: Polled) -> None:
        row = self.rows.get(message.key)
        if row is None:
            return
        if message.probe is not None:
            row.probe, row.error, row.last_ok = message.probe, None, self.clock()
        else:
            row.error = message.error
        self.render_rows()

    @work(exclusive=True, exit_on_error=False, group="poll")
    async def poll_devices(self) -> None:
        """Probe every device, a few at a time; back off from the ones that do not answer."""
        due: dict[str, float] = {}
        failures: dict[str, int] = {}
        inflight: dict[str, asyncio.Task[None]] = {}
        limit = asyncio.Semaphore(POLL_CONCURRENCY)

        async def probe(key: str, record: DeviceRecord) -> None:
            async with limit:
                try:
                    result = await self.fleet.probe(record)
                except AgentClientError as err:
                    failures[key] = failures.get(key, 0) + 1
                    due[key] = time.monotonic() + min(POLL_MAX_S, POLL_EVERY_S * 2 ** failures[key])
                    self.post_message(self.Polled(key, None, str(err)))
                    return
                failures[key] = 0
                due[key] = time.monotonic() + POLL_EVERY_S
                self.post_message(self.Polled(key, result, None))

        try:
            while True:
                now = time.monotonic()
                for key, row in list(self.rows.items()):
                    if key not in inflight and due.get(key, 0.0) <= now:
                        task = asyncio.create_task(probe(key, row.record))
                        inflight[key] = task
                        task.add_done_callback(lambda _t, k=key: inflight.pop(k, None))
                await asyncio.sleep(0.25)
        finally:
            for task in list(inflight.values()):
                task.cancel()

    # --- rendering ----------------------------------------------------------------------------------

    def visible_rows(self) -> list[tuple[str, DeviceRow]]:
        needle = self.filter_text.casefold()
        return [
            (k, r)
            for k, r in self.rows.items()
            if not needle or r.matches(needle) or any(needle in t.casefold() for t in self.tags.get(k, ()))
        ]

    def table_cells(self, key: str, row: DeviceRow, now: float) -> list[Text]:
        """The row's cells in the columns shown: its mark, its figures, its tags."""
        mark = Text("[x]" if key in self.marked else "[ ]", style="bold" if key in self.marked else "dim")
        cells = [mark, *row.cells(now), Text(", ".join(self.tags.get(key, ())), style="cyan")]
        every = dict(zip(TABLE_COLUMNS, cells, strict=True))
        return [every[c] for c in self.shown_columns]

    def render_rows(self) -> None:
        table = self.query_one(DataTable)
        now = self.clock()
        shown = self.visible_rows()
        keys = [k for k, _ in shown]
        if [k.value for k in table.rows] == keys:
            for key, row in shown:
                for label, cell in zip(self.shown_columns, self.table_cells(key, row, now), strict=True):
                    table.update_cell(key, label, cell, update_width=True)
        else:
            selected = self.selected_key()
            table.clear()
            for key, row in shown:
                table.add_row(*self.table_cells(key, row, now), key=key)
            if selected in keys:
                table.move_cursor(row=keys.index(selected))
        self.show_detail()
        empty = self.query_one("#empty", Static)
        table.display = bool(shown)  # an empty table is a header row that says nothing
        empty.display = not shown
        if shown:
            return
        if self.load_error:
            empty.update(Text(self.load_error, style="red"))
        elif self.rows:
            empty.update(Text(f"no device matches {self.filter_text!r}: esc clears the filter"))
        else:
            lines = [
                "No devices yet. Press a to add one by address and token, s to probe a subnet "
                "(when multicast is blocked), or run `fieldtui demo`."
            ]
            empty.update(Text("\n".join(lines + self.fleet.hints())))

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        """The highlighted device in full: where, from where, and why it is not well."""
        key = self.selected_key()
        row = self.rows.get(key) if key else None
        detail = self.query_one("#detail", Static)
        if row is None:
            detail.update("")
            return
        r = row.record
        text = Text.assemble((r.name, "bold"), f"  {r.api_url}", (f"  id {r.id or '?'}", "dim"))
        text.append(f"  from {', '.join(r.origin) or '?'}", style="dim")
        if row.error:
            text.append(f"\n{row.error}", style="red")
        elif row.probe is not None and (row.probe.health.reasons or row.probe.health.notes):
            # the agent's verdict as the dashboard and `fieldtui status` show it: reasons, then notes
            health = row.probe.health
            text.append("\n" + "; ".join([*health.reasons, *health.notes]), style="yellow")
        detail.update(text)

    def selected_key(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return key.value

    # --- actions ------------------------------------------------------------------------------------

    def action_open(self) -> None:
        key = self.selected_key()
        if key is None:
            self.notify("No device selected: add one with a.", severity="warning")
            return
        self.app.open_device(self.rows[key].record)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.render_rows()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(DataTable).focus()
        if not self.filter_text:
            self.query_one("#filter").remove_class("-shown")

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-shown")
        self.filter_text = ""
        self.query_one(DataTable).focus()
        self.render_rows()

    def action_add(self) -> None:
        from screens.add_device import AddDeviceScreen

        def added(result: Added | None) -> None:
            if result is None:
                return
            self.reload()
            if result.warning:
                self.notify(result.warning, title=f"{result.device.name} added", severity="warning")
            else:
                self.notify(f"{result.device.name} at {result.device.api_url}", title="Device added")

        self.app.push_screen(AddDeviceScreen(self.fleet), added)

    def action_forget(self) -> None:
        key = self.selected_key()
        row = self.rows.get(key) if key else None
        if row is None:
            return
        record = row.record
        if not self.fleet.is_saved(record):
            self.notify(f"{record.name} is not saved: there is nothing to forget", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.fleet.forget(record)
            except ConsoleError as err:
                self.notify(str(err), severity="error")
                return
            self.reload()
            self.notify(f"{record.name}: its token and TLS pin are removed", title="Device forgotten")

        question = f"Forget {record.name} ({record.api_url})?"
        detail = (
            "Its saved token and TLS pin are removed from this laptop; the device itself is not changed. "
            "If it still announces itself over mDNS it shows up again, unpaired."
        )
        self.app.push_screen(ConfirmDialog(question, "Forget", detail), answered)

    def action_pair(self) -> None:
        from screens.pair_dialog import PairDialog

        def paired(result: Added | None) -> None:
            if result is not None:
                self.reload()
                self.notify(f"{result.device.name} at {result.device.api_url}", title="Device paired")

        self.app.push_screen(PairDialog(self.fleet), paired)

    def action_refresh(self) -> None:
        self.reload()
        self.poll_devices()  # exclusive: restarts with every device due now
        self.notify("Probing every device again.", timeout=2)

    def action_probe_subnet(self) -> None:
        from screens.probe_dialog import ProbeDialog, ProbeRequest

        def chosen(request: ProbeRequest | None) -> None:
            if request is not None:
                ranges = ", ".join(map(str, request.networks))
                self.notify(f"Probing {ranges} for agents…", timeout=3)
                self.sweep(request.networks, request.ports)

        self.app.push_screen(ProbeDialog(), chosen)

    @work(exclusive=True, exit_on_error=False, group="sweep")
    async def sweep(self, networks: list[Any], ports: list[int]) -> None:
        """Probe the ranges through the fleet; what answers joins the list, marked "(probe)"."""
        try:
            report = await self.fleet.sweep(networks, ports)
        except (ConsoleError, OSError) as err:
            self.post_message(self.Swept(None, str(err)))
            return
        self.post_message(self.Swept(report.summary()))

    @on(Swept)
    def _swept(self, message: Swept) -> None:
        if message.error is not None:
            self.notify(message.error, title="Probe failed", severity="error")
            return
        self.reload()
        self.poll_devices()  # the new devices get their health and status now
        summary = message.summary or ""
        self.notify(summary[0].upper() + summary[1:] + ".", title="Probe finished", timeout=6)

    def action_write_report(self) -> None:
        if not self.rows:
            self.notify("No device to report on: add or pair one first.", severity="warning")
            return
        self.notify("Writing the visit report: asking every device what changed…", timeout=3)
        self.write_report([row.record for row in self.rows.values()])

    @work(exclusive=True, exit_on_error=False, group="report")
    async def write_report(self, records: list[DeviceRecord]) -> None:
        """The visit report (fieldtui/report.py) of the devices in the list, as one HTML file."""
        from fieldtui.report import parse_since, write_report

        entries = [SavedDevice(device=r, token=self.fleet.token(r)) for r in records]
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
        path = self.report_dir / f"visit-{stamp}.html"
        try:
            report = await write_report(entries, parse_since(None, self.clock()), path)
        except (ConsoleError, OSError) as err:
            self.post_message(self.ReportWritten(None, error=str(err)))
            return
        down = sum(1 for d in report["devices"] if not d["reachable"])
        summary = (
            f"{len(report['devices'])} device(s), {down} unreachable, {len(report['failures'])} failure(s)"
        )
        self.post_message(self.ReportWritten(path, summary))

    @on(ReportWritten)
    def _report_written(self, message: ReportWritten) -> None:
        if message.error is not None:
            self.notify(message.error, title="Report not written", severity="error")
        else:
            self.notify(f"{message.path}\n{message.summary}", title="Visit report written", timeout=12)

    def action_mark(self) -> None:
        """Mark or unmark the highlighted device for a rollout, then go to the next one."""
        key = self.selected_key()
        if key is None:
            return
        self.marked ^= {key}
        self.render_rows()
        self.query_one(DataTable).action_cursor_down()

    def action_rollout(self) -> None:
        """A rollout to the marked devices (screens/rollout.py asks what and how, then runs it)."""
        from screens.rollout import open_rollout

        open_rollout(self, [self.rows[k].record for k in self.rows if k in self.marked])

    def open_last_rollout(self) -> None:
        from screens.rollout import open_last_rollout

        open_last_rollout(self)

    def commands(self) -> list[SystemCommand]:
        return [
            SystemCommand("Add a device", "save a device by address and token", self.action_add),
            SystemCommand("Refresh devices", "probe every device again now", self.action_refresh),
            SystemCommand("Filter devices", "show only devices matching a text", self.action_filter),
            SystemCommand("Pair a device over SSH", "read its token and TLS pin over SSH", self.action_pair),
            SystemCommand(
                "Mark the selected device", "for a rollout (space; again to unmark)", self.action_mark
            ),
            SystemCommand(
                "Roll out a model to the marked devices",
                "in waves, canary first (mark devices with space)",
                self.action_rollout,
            ),
            SystemCommand(
                "Open the last rollout",
                "where each device stands; p resumes a rollout that did not end",
                self.open_last_rollout,
            ),
            SystemCommand(
                "Forget the selected device", "remove its token and TLS pin (asks first)", self.action_forget
            ),
            SystemCommand(
                "Write the visit report",
                "one HTML file: what changed on each device, and is it working",
                self.action_write_report,
            ),
            SystemCommand(
                "Probe a subnet",
                "find agents where mDNS cannot reach (blocked multicast)",
                self.action_probe_subnet,
            ),
        ]
