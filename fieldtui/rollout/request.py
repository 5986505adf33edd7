"""A rollout asked for in the TUI: the devices marked in the list and the dialog's fields, checked with
the same rules as ``fieldtui rollout`` (fieldtui/cli/rollout.py), then made a plan and a first state.

:func:`check_request` is all the checking (cheap, no I/O beyond a stat): one :class:`ConsoleError` line
saying what to change, and nothing is written. :func:`start_state` hashes the file (the slow part, so a
worker runs it) and writes nothing either; the runner saves the state at its first step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fieldtui.config import SavedDevice
from fieldtui.errors import ConsoleError
from fieldtui.push import check_file, hash_file, model_format, valid_version
from fieldtui.rollout.plan import RolloutPlan, RolloutState, max_failures, new_id, wave_sizes


@dataclass(frozen=True)
class RolloutRequest:
    """What the dialog asked for, checked: devices in order, waves in devices, failures allowed."""

    model: Path
    version: str
    devices: tuple[SavedDevice, ...]
    canary: int
    waves: tuple[int, ...]
    max_failures: int


def check_devices(entries: Sequence[SavedDevice | None], names: Sequence[str]) -> tuple[SavedDevice, ...]:
    """The marked devices as saved ones with a way in (a token, or SSH); ConsoleError naming the others."""
    if not entries:
        raise ConsoleError("no device is marked: mark devices with space, then press R")
    unsaved = [name for name, e in zip(names, entries, strict=True) if e is None]
    if unsaved:
        raise ConsoleError(f"not saved: {', '.join(unsaved)}; pair them (p) or add them (a) first")
    missing = [e.device.name for e in entries if e is not None and not e.token and e.device.ssh is None]
    if missing:
        raise ConsoleError(f"no token is saved for {', '.join(missing)}: pair it (p) first")
    return tuple(e for e in entries if e is not None)


def check_request(
    devices: Sequence[SavedDevice], model: str, version: str, canary: str, waves: str, failures: str
) -> RolloutRequest:
    """The dialog's fields checked; ConsoleError (one line, the field first) for the first bad one."""
    if not model.strip():
        raise ConsoleError("model file: choose one in the tree or type its path")
    path = Path(model.strip()).expanduser()
    check_file(path)
    model_format(path)
    if not valid_version(version.strip()):
        raise ConsoleError("version: 1-64 letters, digits, '.', '_', '-' or '+', like v8 or 2026.11.1")
    text = canary.strip() or "0"
    if not text.isdigit():
        raise ConsoleError(f"canary {canary.strip()[:20]!r}: a number of devices, like 1 (0: no canary wave)")
    total = len(devices)
    sizes = wave_sizes(total, int(text), waves.strip() or "100%")
    limit = max_failures(failures.strip() or "0", total)
    return RolloutRequest(path.resolve(), version.strip(), tuple(devices), int(text), tuple(sizes), limit)


async def start_state(request: RolloutRequest) -> RolloutState:
    """The plan of ``request`` (the file hashed now: a changed file is caught on resume) as a fresh state."""
    sha256 = await hash_file(request.model)
    plan = RolloutPlan(
        id=new_id(),
        model=str(request.model),
        version=request.version,
        sha256=sha256,
        devices=[e.key for e in request.devices],
        canary=request.waves[0] if request.canary else 0,
        waves=list(request.waves),
        max_failures=request.max_failures,
    )
    return RolloutState.start(plan, {e.key: e.device.name for e in request.devices})
