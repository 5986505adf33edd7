"""The agent's log, live: the recent lines, then every new one from the event stream.

A level filter (``v`` cycles it: all, INFO and up, WARNING and up, ERROR) and a ``/`` search narrow
what is shown; the view follows the tail unless the technician scrolled up to read (``end`` follows
again). The lines are kept (a few thousand) so changing the filter redraws without asking the agent.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Input, RichLog, Static

from fieldtui.errors import AgentClientError
from fieldtui.protocol import DeviceRecord, LogLine
from screens.timefmt import clock_time
from screens.widgets.footer import Footer

KEEP = 5000
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FILTERS = (None, "INFO", "WARNING", "ERROR")  # None: every line
RANK = {name: i for i, name in enumerate(LEVELS)} | {"CRITICAL": 4}
LEVEL_STYLE = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}


def format_line(line: LogLine) -> Text:
    level = line.level.upper()
    text = Text(no_wrap=False)
    text.append(f"{clock_time(line.ts)}.{int(line.ts % 1 * 1000):03d} ", style="dim")
    text.append(f"{level:<7} ", style=LEVEL_STYLE.get(level, "") or "green")
    text.append(f"{line.logger}: ", style="cyan")
    text.append(line.message, style=LEVEL_STYLE.get(level, ""))
    return text


class LogsScreen(Screen[None]):
    CSS_PATH = "logs.tcss"
    AUTO_FOCUS = "#log"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("v", "cycle_level", "Level"),
        Binding("end,G", "follow", "Follow tail"),
    ]

    class LinesArrived(Message):
        def __init__(self, lines: list[LogLine]) -> None:
            super().__init__()
            self.lines = lines

    class LinkChanged(Message):
        def __init__(self, state: str, reason: str | None) -> None:
            super().__init__()
            self.state, self.reason = state, reason

    def __init__(self, api: Any, record: DeviceRecord) -> None:
        super().__init__()
        self.api = api
        self.record = record
        self.lines: deque[LogLine] = deque(maxlen=KEEP)
        self._seen: set[tuple[float, str, str]] = set()
        self.level: str | None = None
        self.search = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="bar"):
            yield Static(id="level")
            yield Input(placeholder="search the log (enter keeps it, esc clears)", id="search")
            yield Static(id="state")
        yield RichLog(id="log", max_lines=KEEP, wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.record.name} — log"
        self._show_bar()
        self.tail()

    @work(exclusive=True, exit_on_error=False, group="logs")
    async def tail(self) -> None:
        """The recent page, then the live ``log`` events; after a reconnect, fill the gap from the page."""

        def on_state(state: str, reason: str | None) -> None:
            self.post_message(self.LinkChanged(state, reason))

        try:
            page = await self.api.logs(limit=500)
            self.post_message(self.LinesArrived(page.lines))
            last = page.lines[-1].ts if page.lines else None
            async with self.api.events(on_state=on_state) as stream:
                filled = -1  # the stream's reconnect count whose gap is filled; -1: the gap before the first
                async for event, model in stream:
                    if stream.reconnects != filled and last is not None:  # lines said while we were away
                        filled = stream.reconnects
                        gap = await self.api.logs(limit=500, since=last)
                        self.post_message(self.LinesArrived(gap.lines))
                    if event == "log" and isinstance(model, LogLine):
                        last = model.ts
                        self.post_message(self.LinesArrived([model]))
        except AgentClientError as err:
            self.post_message(self.LinkChanged("closed", str(err)))

    @on(LinesArrived)
    def _lines(self, message: LinesArrived) -> None:
        log = self.query_one(RichLog)
        follow = log.is_vertical_scroll_end
        for line in message.lines:
            key = (line.ts, line.logger, line.message)
            if key in self._seen:
                continue  # the page and the stream overlap by a moment
            self._seen.add(key)
            if len(self._seen) > 2 * KEEP:
                self._seen = {(x.ts, x.logger, x.message) for x in self.lines}
            self.lines.append(line)
            if self._shown(line):
                log.write(format_line(line), scroll_end=follow)

    @on(LinkChanged)
    def _link(self, message: LinkChanged) -> None:
        state = self.query_one("#state", Static)
        if message.state == "connected":
            state.update(Text("● live", style="green"))
        elif message.state == "reconnecting":
            state.update(Text(f"● reconnecting: {message.reason}", style="yellow"))
        elif message.state == "closed" and message.reason:
            state.update(Text(f"● {message.reason}", style="red"))

    def _shown(self, line: LogLine) -> bool:
        if self.level is not None and RANK.get(line.level.upper(), 1) < RANK[self.level]:
            return False
        if self.search:
            needle = self.search.casefold()
            return needle in line.message.casefold() or needle in line.logger.casefold()
        return True

    def redraw(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        for line in self.lines:
            if self._shown(line):
                log.write(format_line(line), scroll_end=False)
        log.scroll_end(animate=False)
        self._show_bar()

    def _show_bar(self) -> None:
        shown = "every level" if self.level is None else f"{self.level} and up"
        text = Text.assemble(("level ", "dim"), (shown, "bold"))
        if self.search:
            text.append_text(Text.assemble(("  search ", "dim"), (self.search, "bold")))
        self.query_one("#level", Static).update(text)

    # --- actions ------------------------------------------------------------------------------------

    def action_cycle_level(self) -> None:
        self.level = FILTERS[(FILTERS.index(self.level) + 1) % len(FILTERS)]
        self.redraw()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search = event.value.strip()
        self.redraw()

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self.query_one(RichLog).focus()

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_class("-shown"):  # first escape leaves the search, the second one the screen
            box.value = ""
            box.remove_class("-shown")
            self.query_one(RichLog).focus()
            return
        self.app.pop_screen()

    def action_follow(self) -> None:
        self.query_one(RichLog).scroll_end(animate=False)

    def commands(self) -> list[SystemCommand]:
        out = [
            SystemCommand("Search the log", "show only lines containing a text", self.action_search),
            SystemCommand("Follow the tail", "jump to the newest line and stay there", self.action_follow),
            SystemCommand("Next log level", "show the next level filter (v)", self.action_cycle_level),
        ]
        for level in FILTERS:
            label = "every level" if level is None else f"{level} and up"
            out.append(
                SystemCommand(
                    f"Log level: {label}", "filter the log by level", lambda lv=level: self._set(lv)
                )
            )
        return out

    def _set(self, level: str | None) -> None:
        self.level = level
        self.redraw()
