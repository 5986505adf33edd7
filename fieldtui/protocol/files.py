"""Writing a file so a crash never leaves half of it: the one ``atomic_write`` both programs use (the
agent's home, engines and settings; the console's saved devices and reports). Standard library only."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable. Not every platform lets a folder be opened: then a best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes | memoryview | str, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part.

    The file is created with ``mode`` from the start (no window where a secret is world-readable), written,
    fsynced, renamed over ``path``, and the rename made durable.
    """
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
