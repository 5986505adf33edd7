"""What a rollout is: the plan the technician asked for, and where each device stands.

A :class:`RolloutPlan` is fixed when the rollout starts (the model file, its sha256, the devices in
order, the waves, the abort criteria); a :class:`RolloutState` is the plan plus what happened so far,
one :class:`DeviceProgress` per device. Both are plain pydantic models, written to one JSON file per
rollout (fieldtui/rollout/store.py) after every step, so a rollout resumes from the file alone.

Waves are sizes in devices, in order: ``[1, 2, 3]`` is one canary, then two devices, then the last
three. :func:`wave_sizes` computes them from the command line's ``--canary N`` and ``--waves 25%,100%``
(cumulative shares of all the devices, the last one 100%) or ``--waves exp`` (each wave twice the one
before). :func:`max_failures` turns ``--max-failures N`` or ``P%`` into a device count.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fieldtui.config import SavedDevice
from fieldtui.errors import ConsoleError

Stage = Literal[
    "queued",  # not started
    "uploading",  # the model is being sent (percent says how far)
    "activating",  # the device loads and health-checks it, then swaps
    "probation",  # serving it, watched by the device against its last good model
    "done",  # passed probation (and the soak): the device keeps the new version
    "failed",  # the push or the activation failed (the device kept its old model), see reason
    "rolled_back",  # it served the new version and went back (its probation failed, or the abort)
    "unreachable",  # neither HTTP nor SSH got through within the device timeout, see reason
    "skipped",  # never started: the rollout was aborted before its wave
]
FINAL_STAGES = ("done", "failed", "rolled_back", "unreachable", "skipped")
FAILURES = ("failed", "rolled_back")  # what counts against max_failures (unreachable does not)
Status = Literal["running", "paused", "aborted", "done", "failed"]


class RolloutError(ConsoleError):
    """A rollout that cannot start or resume as asked (bad waves, unknown id, ...): one line saying why."""


def new_id(now: float | None = None) -> str:
    """A short id that sorts by start time: ``20260314-0915-3fa2``."""
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


class RolloutPlan(BaseModel):
    """What to roll out where, in which waves, and when to stop."""

    model_config = ConfigDict(extra="ignore")

    id: str
    model: str = Field(description="path of the model file on this laptop")
    version: str
    sha256: str
    devices: list[str] = Field(description="saved-device keys (id, else host:port), in rollout order")
    canary: int = Field(ge=0)
    waves: list[int] = Field(description="devices per wave, in order (the canary wave first)")
    soak_s: float | None = Field(
        default=None,
        ge=0,
        description="least time each device serves the new version before its wave is judged; "
        "None: the device's own probation window",
    )
    max_failures: int = Field(default=0, ge=0, description="abort when more devices than this fail")
    rollback_on_abort: bool = True
    device_timeout_s: float = Field(default=30.0, gt=0)

    def wave_of(self, index: int) -> int:
        """The wave (0 = the first) of the ``index``-th device."""
        total = 0
        for wave, size in enumerate(self.waves):
            total += size
            if index < total:
                return wave
        return len(self.waves) - 1


class DeviceProgress(BaseModel):
    """One device of a rollout: where it stands and why."""

    model_config = ConfigDict(extra="ignore")

    device: str = Field(description="the saved device's key")
    name: str = Field(default="", description="its name, for display")
    wave: int
    stage: Stage = "queued"
    percent: float = Field(default=0.0, description="upload progress, 0-100")
    reason: str = ""
    via: Literal["http", "ssh", ""] = ""
    link_note: str = Field(default="", description="why HTTP was left for SSH, when it was")
    probation_ends_at: float | None = Field(default=None, description="unix time its probation ends")
    pushed: bool = Field(default=False, description="the device holds these bytes: never sent twice")
    activated: bool = Field(default=False, description="this rollout asked it to serve the new version")
    previous_version: str | None = Field(default=None, description="what it served before")
    serving_since: float | None = Field(
        default=None, description="unix time it began serving the new version"
    )
    updated_at: float = 0.0

    @property
    def final(self) -> bool:
        return self.stage in FINAL_STAGES


class RolloutState(BaseModel):
    """A plan and how far it got; what fieldtui/rollout/store.py writes after every step."""

    model_config = ConfigDict(extra="ignore")

    plan: RolloutPlan
    status: Status = "running"
    current_wave: int = 0
    devices: list[DeviceProgress]
    created_at: float
    updated_at: float
    abort_reason: str = ""

    @classmethod
    def start(cls, plan: RolloutPlan, names: dict[str, str] | None = None) -> RolloutState:
        """A fresh state for ``plan``: every device queued in its wave."""
        now = time.time()
        names = names or {}
        devices = [
            DeviceProgress(device=key, name=names.get(key, key), wave=plan.wave_of(i), updated_at=now)
            for i, key in enumerate(plan.devices)
        ]
        return cls(plan=plan, devices=devices, created_at=now, updated_at=now)

    def wave(self, index: int) -> list[DeviceProgress]:
        return [d for d in self.devices if d.wave == index]

    def failures(self) -> list[DeviceProgress]:
        return [d for d in self.devices if d.stage in FAILURES]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.devices:
            out[d.stage] = out.get(d.stage, 0) + 1
        return out


# --- waves and criteria from the command line -----------------------------------------------------


def _percent(text: str, what: str) -> float:
    body = text.strip()
    if not body.endswith("%"):
        raise RolloutError(f"{what} {text!r}: write a share of the devices as a percent, like 25%")
    try:
        value = float(body[:-1])
    except ValueError:
        raise RolloutError(
            f"{what} {text!r} is not a percent: use a number from 0 to 100, like 25%"
        ) from None
    if not (0.0 < value <= 100.0) or math.isnan(value):
        raise RolloutError(f"{what} {text!r} is out of range: use more than 0% and at most 100%")
    return value


def wave_sizes(total: int, canary: int, waves: str = "100%") -> list[int]:
    """Devices per wave for ``total`` devices: ``canary`` first, then ``waves``.

    ``waves`` is ``exp`` (each wave twice the one before, starting from the canary's size or 1) or
    cumulative percents of all the devices, ending at 100% (``25%,100%``: after the canary, up to a
    quarter of the devices, then all). A wave a percent would leave empty is dropped."""
    if total < 1:
        raise RolloutError("no devices to roll out to")
    if canary < 0 or canary > total:
        raise RolloutError(f"--canary {canary}: use 0 to {total} (the rollout has {total} devices)")
    sizes = [canary] if canary else []
    done = canary
    spec = waves.strip().lower()
    if spec == "exp":
        step = max(canary, 1)
        while done < total:
            step = step * 2 if sizes else step
            size = min(step, total - done)
            sizes.append(size)
            done += size
        return sizes
    parts = spec.split(",")
    if not parts or any(not p.strip() for p in parts):
        raise RolloutError(f"--waves {waves!r}: list percents like 25%,100%, or write exp")
    shares = [_percent(p, "--waves") for p in parts]
    if any(b <= a for a, b in zip(shares, shares[1:], strict=False)):
        raise RolloutError(f"--waves {waves!r}: each percent must be larger than the one before")
    if shares[-1] != 100.0:
        raise RolloutError(f"--waves {waves!r}: the last wave must be 100% (every device)")
    for share in shares:
        target = max(math.ceil(total * share / 100.0 - 1e-9), done)
        if target > done:
            sizes.append(target - done)
            done = target
    return sizes


def max_failures(text: str | int, total: int) -> int:
    """``--max-failures``: a device count (``2``) or a share of the devices (``10%``, rounded down)."""
    body = str(text).strip()
    if body.endswith("%"):
        try:
            value = float(body[:-1])
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 100.0:
            raise RolloutError(f"--max-failures {text!r}: use a count like 1 or a percent from 0% to 100%")
        return math.floor(total * value / 100.0 + 1e-9)
    if not body.isdigit():
        raise RolloutError(f"--max-failures {text!r}: use a count like 1 or a percent like 10%")
    return int(body)


async def make_plan(
    model: str | Path,
    version: str,
    devices: Sequence[SavedDevice],
    *,
    canary: int = 1,
    waves: str = "100%",
    soak_s: float | None = None,
    failures: str | int = 0,
    rollback_on_abort: bool = True,
    device_timeout_s: float = 30.0,
) -> RolloutPlan:
    """A new plan, everything checked before the file is hashed (the CLI's flags and the TUI's dialog
    both end here): the version name, the model file, the devices (each once, each with a token or an
    SSH pairing), the waves and the criteria. ConsoleError (one line) for the first thing wrong."""
    from fieldtui.push import check_file, hash_file, model_format, valid_version

    if not valid_version(version):
        raise ConsoleError(
            f"version name {version[:80]!r} is not allowed: use 1-64 letters, digits, '.', '_', '-' or '+', "
            "starting with a letter or digit (like v7 or 2024.06.1)"
        )
    path = Path(model).expanduser().resolve()
    check_file(path)
    model_format(path)
    unique: dict[str, SavedDevice] = {}
    for entry in devices:
        unique.setdefault(entry.key, entry)
    missing = [e.device.name for e in unique.values() if not e.token and e.device.ssh is None]
    if missing:
        raise ConsoleError(
            f"no token is saved for {', '.join(missing)}: pair it with `fieldtui pair HOST`; nothing was started"
        )
    sizes = wave_sizes(len(unique), canary, waves)
    limit = max_failures(failures, len(unique))
    if soak_s is not None and not (0.0 <= soak_s < math.inf):
        raise RolloutError(f"soak {soak_s!r}: use a number of seconds, 0 or more")
    if not (0.0 < device_timeout_s < math.inf):
        raise RolloutError(f"device timeout {device_timeout_s!r}: use a number of seconds above 0")
    return RolloutPlan(
        id=new_id(),
        model=str(path),
        version=version,
        sha256=await hash_file(path),
        devices=list(unique),
        canary=sizes[0] if canary else 0,
        waves=sizes,
        soak_s=soak_s,
        max_failures=limit,
        rollback_on_abort=rollback_on_abort,
        device_timeout_s=device_timeout_s,
    )
