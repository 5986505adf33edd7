"""Rollouts on the laptop: one JSON file per rollout, written atomically after every step.

Where: ``rollouts/`` in the console's state directory, ``$XDG_STATE_HOME/fieldtui`` (else
``~/.local/state/fieldtui``): XDG's place for "state that should persist between restarts" such as an
operation to pick up again, apart from the configuration (devices.json, in the config dir) and from
anything a backup must keep. ``FIELDTUI_DATA_DIR`` overrides it; when only ``FIELDTUI_CONFIG_DIR`` is set
(a portable setup, the tests), the rollouts go beside devices.json in that directory, so one variable
moves all the console's files.

A file is replaced with :func:`fieldtui.protocol.files.atomic_write` (temp file, fsync, rename): a laptop
that sleeps or loses power mid-write leaves the previous step or the new one, never half a file. The
files hold no secret (device keys and progress, never a token), but live in a 0700 directory anyway.

While a runner drives a rollout it holds an exclusive ``flock`` on ``ID.lock`` beside the file: a second
console resuming the same rollout (another terminal, the TUI) is refused instead of racing the first one
to the same devices. The kernel drops the lock with the process, so a killed console never leaves a
rollout locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from fieldtui.protocol.files import atomic_write
from fieldtui.rollout.plan import RolloutError, RolloutState

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def state_dir() -> Path:
    """The console's state directory (not created here); see the module doc."""
    override = os.environ.get("FIELDTUI_DATA_DIR")
    if override:
        return Path(override).expanduser()
    config = os.environ.get("FIELDTUI_CONFIG_DIR")
    if config:
        return Path(config).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "fieldtui"


class RolloutStore:
    """Read and write rollout files in ``directory`` (default: ``state_dir()/rollouts``)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or state_dir() / "rollouts"

    def path(self, rollout_id: str) -> Path:
        if not ID_RE.fullmatch(rollout_id) or ".." in rollout_id:
            raise RolloutError(
                f"{rollout_id[:80]!r} is not a rollout id: `fieldtui rollouts` lists them (like 20260314-0915-3fa2)"
            )
        return self.dir / f"{rollout_id}.json"

    def save(self, state: RolloutState) -> None:
        path = self.path(state.plan.id)
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, state.model_dump_json(indent=2) + "\n", mode=0o600)
        except OSError as err:
            raise RolloutError(f"cannot write {path}: {err.strerror}") from None

    @contextlib.contextmanager
    def lock(self, rollout_id: str) -> Iterator[None]:
        """Hold rollout ``rollout_id`` for this process; RolloutError when another one holds it."""
        path = self.path(rollout_id).with_suffix(".lock")
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise RolloutError(f"cannot open {path}: {err.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise RolloutError(
                    f"rollout {rollout_id} is being run by another console (pid {holder}): "
                    "let it finish, or stop it first"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def load(self, rollout_id: str) -> RolloutState:
        path = self.path(rollout_id)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RolloutError(
                f"no rollout {rollout_id!r} in {self.dir}: `fieldtui rollouts` lists them"
            ) from None
        except OSError as err:
            raise RolloutError(f"cannot read {path}: {err.strerror}") from None
        try:
            return RolloutState.model_validate_json(raw)
        except ValidationError as err:
            first = str(err).splitlines()[0]
            raise RolloutError(f"{path} is damaged ({first}): move it away and start a new rollout") from None

    def list(self) -> list[RolloutState]:
        """Every readable rollout, newest first (a damaged file is skipped, not fatal)."""
        try:
            paths = sorted(self.dir.glob("*.json"), reverse=True)
        except OSError:
            return []
        states = []
        for path in paths:
            try:
                states.append(RolloutState.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValidationError):
                continue
        states.sort(key=lambda s: s.created_at, reverse=True)
        return states
