"""A full disk is bad luck, not a bug: recognise it, say what to delete, and keep serving.

:func:`is_disk_full` looks through an exception and the ones it was raised from for ``ENOSPC`` /
``EDQUOT`` or SQLite's "database or disk is full"; the API answers those 507 with :func:`full_detail`.
:class:`DiskWatch` is what health and status say about the agent home's filesystem: nearly full, or
read-only because state.db could only be opened as an in-memory copy.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

LOW_BYTES = 1 << 20  # under 1 MiB free: writes are about to fail (a model, a job row, agent.log)
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException | None) -> bool:
    """True when ``err`` (or one it came from) is the disk being full."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if isinstance(err, sqlite3.DatabaseError) and "full" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def what_to_delete(home: Path) -> str:
    return (
        f"free space on the filesystem of {home}: delete model versions no longer needed "
        "(DELETE /v1/models/{version}), old engines (engines/), rotated logs (agent.log.1-3), "
        "or other files on that filesystem"
    )


def full_detail(home: Path) -> str:
    free = free_bytes(home)
    left = f" ({_mb(free)} free)" if free is not None else ""
    return f"the device's disk is full{left}, nothing was changed; {what_to_delete(home)}, then try again"


class DiskWatch:
    """What the agent home's filesystem allows; ``read_only`` is set when state.db is an in-memory copy."""

    def __init__(self, home: Path, read_only: str | None = None) -> None:
        self.home = home
        self.read_only = read_only

    def reason(self) -> str | None:
        """One line for health and status, None while there is room."""
        if self.read_only:
            return f"read-only: {self.read_only}; {what_to_delete(self.home)} and restart the agent"
        free = free_bytes(self.home)
        if free is not None and free < LOW_BYTES:
            return f"disk full ({_mb(free)} free): uploads, activations and settings fail; {what_to_delete(self.home)}"
        return None
