"""The one progress line of both command lines (``fieldtui`` and ``fieldtui-agent``) on stderr.

On a terminal the line is rewritten in place (``\\r``); into a file or a pipe (CI logs, ``2>log``) it
becomes a line per step instead, so a log holds no carriage-return soup and no hundred copies of a
counter. ``JobProgress`` shows a job's ``(fraction, stage)`` (benchmarks, rebuilds); the push's byte
progress (fieldtui/cli/models.py) writes through the same :class:`StatusLine`.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

WIDTH = 100
_ELAPSED = re.compile(r"\s*\(\d+ s\)$")  # "(12 s)" at the end of a stage changes every second


class StatusLine:
    """``show(text, step)``: rewrite the line on a terminal; elsewhere write ``text`` once per ``step``
    (any hashable that changes when a line is worth keeping). ``end()`` closes a rewritten line.
    ``quiet`` (``--json``: stdout is for the result): nothing is written."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._steps: set[object] = set()
        self._open = False

    def show(self, text: str, step: object) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r" + text[:WIDTH].ljust(WIDTH))
            self._open = True
        elif step not in self._steps:
            self._steps.add(step)
            self.stream.write(text + "\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        """``text`` on a line of its own, once however often it is said, after closing a rewritten one."""
        self.end()
        if not self.quiet and ("say", text) not in self._steps:
            self._steps.add(("say", text))
            self.stream.write(text + "\n")
            self.stream.flush()

    def end(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


class JobProgress(StatusLine):
    """A job's progress callback: ``progress(0.42, "calibrating 40/100 (12 s)")`` shows ``42% calibrating
    40/100 (12 s)``; into a log, a line per stage (the elapsed-seconds suffix does not count)."""

    def __call__(self, fraction: float, stage: str | None) -> None:
        stage = stage or ""
        self.show(f"{fraction:4.0%} {stage}", _ELAPSED.sub("", stage))
