"""How the console writes times: wall-clock times of day and short "2m ago" durations."""

from __future__ import annotations

import time


def clock_time(ts: float) -> str:
    """``12:04:31`` in local time."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def ago(seconds: float) -> str:
    """``12s``, ``2m``, ``3h``, ``5d``: the largest whole unit, as k9s writes ages."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def date_time(ts: float) -> str:
    """``2026-11-27 12:04`` in local time."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
