"""The lost-link banner: "agent unreachable since 12:04:31 — retrying in 4 s (why)".

The screen says when the link went and when the next try is; the banner keeps the countdown ticking
on its own and hides itself when the link is back. A refused link (wrong token, changed certificate)
is not retried: the banner says what a person has to fix.
"""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.widgets import Static

from screens.timefmt import clock_time


class LinkBanner(Static):
    DEFAULT_CSS = """
    LinkBanner {
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        display: none;
    }
    LinkBanner.-shown { display: block; }
    LinkBanner.-refused { background: $error-darken-2; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.since: float | None = None  # when the link went (wall clock), None while it is up
        self.retry_at: float | None = None
        self.reason = ""
        self.offer = ""  # e.g. "press o to look over SSH", shown after the reason when set

    def clock(self) -> float:
        return getattr(self.app, "clock", time.time)()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def lost(self, reason: str, retry_in: float | None) -> None:
        """The link is down (since the first call); the next try is in ``retry_in`` s (None: now)."""
        if self.since is None:
            self.since = self.clock()
        self.reason = reason
        self.retry_at = None if retry_in is None else self.clock() + retry_in
        self.remove_class("-refused")
        self._tick()

    def set_offer(self, offer: str) -> None:
        """What else the technician can do (or is being done) while the link is down; shown at once."""
        self.offer = offer
        if self.has_class("-refused"):
            self.refused(self.reason)
        else:
            self._tick()

    def refused(self, reason: str) -> None:
        self.since, self.retry_at = self.since or self.clock(), None
        self.reason = reason
        self.add_class("-shown", "-refused")
        text = Text(f"{reason} — not retrying: fix this, then press escape and open the device again")
        if self.offer:
            text.append(f"   {self.offer}", style="bold")
        self.update(text)

    def clear(self) -> None:
        self.since = self.retry_at = None
        self.remove_class("-shown", "-refused")

    def _tick(self) -> None:
        if self.since is None or self.has_class("-refused"):
            return
        if self.retry_at is None:
            when = "reconnecting…"
        else:
            when = f"retrying in {max(0, math.ceil(self.retry_at - self.clock()))} s"
        text = Text.assemble(
            (f"agent unreachable since {clock_time(self.since)} — {when}", "bold"), f"   ({self.reason})"
        )
        if self.offer:
            text.append(f"   {self.offer}", style="bold")
        self.update(text)
        self.add_class("-shown")
