"""Camera changes made through the API, written back to ``config.toml`` so a restart keeps them.

Only the part that changed is rewritten: every ``[[cameras]]`` table is taken out and the new list is
appended at the end of the file (an array of tables may stand anywhere after the top-level keys), or,
for an agent that runs one camera from ``source``, the top-level ``source`` line is replaced. Every
other line, comment and table stays as the technician wrote it. The new text is parsed back and
compared with what was meant before anything is written; then it replaces the file atomically, mode
0600 (a camera URI may carry a password: the file is the one place it is kept in full).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.core.cameras import CameraSpec, parse_cameras
from agent.core.errors import AgentError
from fieldtui.protocol.files import atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

__all__ = ["ConfigWriteError", "cameras_text", "save_cameras", "save_source", "saved_first"]

_HEADER = re.compile(r"^\s*\[")
_CAMERAS_HEADER = re.compile(r"^\s*\[\[\s*cameras\s*\]\]\s*(#.*)?$")
_SOURCE_LINE = re.compile(r"^\s*source\s*=")


class ConfigWriteError(AgentError):
    """config.toml cannot be rewritten (unreadable, not writable, or a layout this writer cannot edit)."""

    status = 409


def _toml_string(value: str) -> str:
    # A JSON string with ASCII escapes is a TOML basic string, except that TOML also wants DEL escaped.
    return json.dumps(value, ensure_ascii=True).replace("\x7f", "\\u007f")


def cameras_text(specs: Sequence[CameraSpec]) -> str:
    """The ``[[cameras]]`` tables for ``specs`` (keys left at their defaults are not written)."""
    out = []
    for spec in specs:
        lines = ["[[cameras]]", f"name = {_toml_string(spec.name)}", f"source = {_toml_string(spec.source)}"]
        if spec.conf is not None:
            lines.append(f"conf = {spec.conf!r}")
        if not spec.enabled:
            lines.append("enabled = false")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigWriteError(f"cannot read {path} to save the camera change: {err}") from None


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigWriteError(
            f"{path} is not valid TOML ({err}); fix it by hand, nothing was changed"
        ) from None


def _without_cameras(lines: list[str]) -> list[str]:
    """``lines`` without the ``[[cameras]]`` tables; comments just above the next table stay with it."""
    kept: list[str] = []
    held: list[str] = []  # comment and blank lines inside a cameras table, kept if a table follows
    skipping = False
    for line in lines:
        if _CAMERAS_HEADER.match(line):
            skipping, held = True, []
            continue
        if skipping and _HEADER.match(line):
            skipping = False
            while held and not held[0].strip() and (not kept or not kept[-1].strip()):
                held.pop(0)
            kept += held
        if not skipping:
            kept.append(line)
        elif not line.strip() or line.lstrip().startswith("#"):
            held.append(line)
        else:
            held = []
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


def _write(path: Path, text: str, want: dict[str, Any]) -> None:
    try:
        after = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        after = None
    if after != want:  # a layout the line editor misread (a multi-line string, say): write nothing
        raise ConfigWriteError(
            f"{path} has a layout the agent cannot edit safely; nothing was changed: "
            "edit [[cameras]] in the file by hand"
        )
    try:
        atomic_write(path, text, mode=0o600)
    except OSError as err:
        raise ConfigWriteError(
            f"cannot write {path}: {err.strerror}; nothing was changed (camera changes are saved there first)"
        ) from None


def save_cameras(path: Path, specs: Sequence[CameraSpec]) -> None:
    """Make ``path``'s cameras ``specs``, keeping the rest of the file; ConfigWriteError and nothing
    written when that cannot be done exactly."""
    parse_cameras([_spec_dict(s) for s in specs])  # the list must load again at the next start
    old = _read(path)
    before = _parse(old, path)
    text = "\n".join(_without_cameras(old.splitlines()))
    text = (text + "\n\n" if text else "") + cameras_text(specs)
    want = {k: v for k, v in before.items() if k != "cameras"}
    want["cameras"] = [_spec_dict(s) for s in specs]
    _write(path, text, want)


def save_source(path: Path, source: str) -> None:
    """The one-camera form: set the top-level ``source`` key, keeping the rest of the file."""
    old = _read(path)
    before = _parse(old, path)
    lines = old.splitlines()
    new_line = f"source = {_toml_string(source)}"
    for i, line in enumerate(lines):
        if _HEADER.match(line):
            lines.insert(i, new_line)
            break
        if _SOURCE_LINE.match(line):
            lines[i] = new_line
            break
    else:
        lines.append(new_line)
    want = {**before, "source": source}
    _write(path, "\n".join(lines) + "\n", want)


def _spec_dict(spec: CameraSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name, "source": spec.source}
    if spec.conf is not None:
        out["conf"] = spec.conf
    if not spec.enabled:
        out["enabled"] = False
    return out


@contextlib.contextmanager
def saved_first(path: Path, write: Callable[[], None]) -> Iterator[None]:
    """Run ``write`` (one of the savers above), then the body; when the body fails (the new source
    cannot be opened, say), the file gets its old content back, so file and agent never disagree."""
    try:
        old: bytes | None = path.read_bytes()
    except FileNotFoundError:
        old = None
    except OSError as err:
        raise ConfigWriteError(f"cannot read {path} to save the camera change: {err.strerror}") from None
    write()
    try:
        yield
    except BaseException:
        if old is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            atomic_write(path, old, mode=0o600)
        raise
