""" "last seen 12 s ago": the mark over values that stopped updating when the link went.

The screen calls :meth:`StaleMark.stale` with the time of the newest data it received and
:meth:`StaleMark.fresh` when data flows again. While stale the mark shows how old the figures are (kept
ticking on its own) and sets ``-stale`` on its screen, so the screen's CSS can grey what is old.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from screens.timefmt import ago, clock_time


class StaleMark(Static):
    DEFAULT_CSS = """
    StaleMark {
        display: none;
        height: 1;
        padding: 0 1;
        color: $warning;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    StaleMark.-shown { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.since: float | None = None  # when the newest data arrived (wall clock), None while fresh

    def clock(self) -> float:
        return getattr(self.app, "clock", time.time)()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def stale(self, last_seen: float | None) -> None:
        """The data on screen stopped at ``last_seen``; None (nothing ever came) marks nothing."""
        if last_seen is None:
            return
        self.since = last_seen
        self.add_class("-shown")
        self.screen.add_class("-stale")
        self._tick()

    def fresh(self) -> None:
        self.since = None
        self.remove_class("-shown")
        self.screen.remove_class("-stale")

    def _tick(self) -> None:
        if self.since is None:
            return
        seconds = self.clock() - self.since
        age = f"{max(0, int(seconds))} s" if seconds < 60 else ago(seconds)
        self.update(
            Text.assemble(("⏸ stale", "bold"), f" · last seen {age} ago, at {clock_time(self.since)}")
        )
