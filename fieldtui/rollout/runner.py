"""Driving a rollout from the console: waves of push, activate, probation, then a decision.

Each wave runs its devices concurrently (at most ``concurrency`` at once), each through its own
:class:`~fieldtui.link.base.DeviceLink` (HTTP first, SSH where the device was paired that way; ``via`` says
which got through). For one device (:mod:`fieldtui.rollout.device`): ask what it holds, push the model
unless it has these bytes already (``pushed``: never sent twice, across ``--resume`` too), activate it,
then read the device's probation status until its own verdict comes (and, with ``soak_s``, until it has
served the new version that long). When every device of the wave has a verdict, the failures are
counted against ``max_failures``; past it the rollout aborts, rolls back the devices of this rollout that
took the new version (unless ``rollback_on_abort`` is off) and marks the rest skipped.

An unreachable device (nothing answered within ``device_timeout_s``, over HTTP nor SSH) is reported with
the reason and does not hold up its wave; it does not count as a failure, as it says nothing about the
model, but a rollout that leaves one behind ends ``failed`` (not ``done``), and ``--resume`` tries it
again. A wave in which no device took the model at all (all unreachable) stops the rollout: the next,
larger wave would go out unproven.

The state is saved (fieldtui/rollout/store.py) after every step, and ``on_change`` is called with it,
so the CLI prints lines and the TUI redraws from the same runner. ``pause``, ``resume`` and ``abort`` are
called from the event loop the runner runs in: a pause lets devices already under way finish and starts
no new one; an abort stops those under way too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from fieldtui.config import SavedDevice
from fieldtui.errors import ConsoleError
from fieldtui.link.base import DeviceLink
from fieldtui.link.fallback import open_link
from fieldtui.push import hash_file
from fieldtui.rollout.device import DeviceStep, unreachable_reason
from fieldtui.rollout.plan import FINAL_STAGES, DeviceProgress, RolloutError, RolloutState
from fieldtui.rollout.store import RolloutStore

ChangeFn = Callable[[RolloutState], None]
# (saved device, device timeout, notice): the link to use; notice(line) says why HTTP was left for SSH
LinkFactory = Callable[[SavedDevice, float, Callable[[str], None]], DeviceLink]


class DeviceStore(Protocol):
    """What the runner needs of the saved devices (fieldtui.config.ConsoleConfig is one)."""

    def find(self, text: str) -> SavedDevice | None: ...


def default_link(entry: SavedDevice, timeout: float, notice: Callable[[str], None]) -> DeviceLink:
    """HTTP, falling back to SSH for a device paired over SSH (fieldtui/link/fallback.py)."""
    return open_link(entry, notice=notice, timeout=timeout, job_timeout=max(120.0, timeout))


class RolloutRunner:
    """Runs (or resumes) ``state`` to its end; see the module doc."""

    def __init__(
        self,
        state: RolloutState,
        *,
        store: RolloutStore,
        devices: DeviceStore,
        on_change: ChangeFn | None = None,
        concurrency: int = 8,
        poll_s: float = 0.5,
        link_factory: LinkFactory = default_link,
    ) -> None:
        self.state = state
        self.store = store
        self.devices = devices
        self.on_change = on_change
        self.concurrency = max(1, concurrency)
        self.poll_s = poll_s
        self.link_factory = link_factory
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._abort: str | None = None
        self._tasks: list[asyncio.Task] = []

    # --- control --------------------------------------------------------------------------------

    def pause(self) -> None:
        """Start no new device or wave; those under way finish."""
        if self.state.status == "running":
            self._unpaused.clear()
            self.state.status = "paused"
            self.changed()

    def resume(self) -> None:
        if self.state.status == "paused":
            self.state.status = "running"
            self._unpaused.set()
            self.changed()

    def abort(self, reason: str) -> None:
        """Stop now: cancel the devices under way, then roll back as the plan says."""
        if self._abort is None:
            self._abort = reason or "aborted by the technician"
        self._unpaused.set()
        for task in self._tasks:
            task.cancel()

    # --- state ----------------------------------------------------------------------------------

    def changed(self, save: bool = True) -> None:
        self.state.updated_at = time.time()
        if save:
            self.store.save(self.state)
        if self.on_change is not None:
            self.on_change(self.state)

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> RolloutState:
        """Run the waves from where the state stands; the final state (also saved). RolloutError when
        the rollout is over, its model file changed, or another console is running it."""
        with self.store.lock(self.state.plan.id):
            with contextlib.suppress(RolloutError):  # another console may have moved it on meanwhile
                saved = self.store.load(self.state.plan.id)
                if saved.updated_at > self.state.updated_at:
                    self.state = saved
            return await self._run()

    async def _run(self) -> RolloutState:
        state, plan = self.state, self.state.plan
        if state.status in ("aborted", "done"):
            raise RolloutError(
                f"rollout {plan.id} is {state.status}"
                + (f" ({state.abort_reason})" if state.abort_reason else "")
                + ": nothing to resume; start a new rollout"
            )
        path = Path(plan.model)
        if self._abort is not None:  # aborting a stopped rollout: its model file is not needed
            await self._rollback_all()
            return self.state
        if not path.is_file():
            raise RolloutError(f"model file not found: {path} (rollout {plan.id} needs it to go on)")
        if await hash_file(path) != plan.sha256:
            raise RolloutError(
                f"{path} changed since rollout {plan.id} started (sha256 {plan.sha256[:12]}… expected): "
                "put the original back, or start a new rollout with a new version name"
            )
        for d in state.devices:
            if d.stage == "unreachable":  # --resume tries unreachable devices again
                d.stage, d.reason = "queued", ""
            if d.name in ("", d.device):  # a plan made without names: the saved device's
                entry = self.devices.find(d.device)
                d.name = entry.device.name if entry is not None else d.device
        if state.status == "failed":
            state.abort_reason = ""
        state.status = "running" if self._unpaused.is_set() else "paused"
        self.changed()
        try:
            for wave in range(len(plan.waves)):
                if self._abort is not None:
                    break
                state.current_wave = wave
                self.changed()
                await self._unpaused.wait()
                if self._abort is not None:
                    break
                await self._run_wave(wave)
                if self._abort is not None:
                    break
                failures = state.failures()
                if len(failures) > plan.max_failures:
                    self._abort = _failure_reason(failures, plan.max_failures)
                    break
                devices = state.wave(wave)
                unproven = not any(d.stage == "done" for d in devices)
                if devices and unproven and any(d.stage == "unreachable" for d in devices):
                    return self._finish_unproven(wave)
            if self._abort is not None:
                await self._rollback_all()
                return self.state
            return self._finish()
        except asyncio.CancelledError:
            self.changed()  # the process is going away: what got done is on disk for --resume
            raise

    async def _run_wave(self, wave: int) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        todo = [d for d in self.state.wave(wave) if d.stage not in FINAL_STAGES]

        async def one(d: DeviceProgress) -> None:
            async with gate:
                await self._unpaused.wait()
                if self._abort is None:
                    await self._device(d)

        self._tasks = [asyncio.ensure_future(one(d)) for d in todo]
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._tasks = []

    async def _device(self, d: DeviceProgress) -> None:
        plan = self.state.plan
        entry = self.devices.find(d.device)
        if entry is None:
            self._set(d, "failed", f"no saved device {d.device}: it was forgotten since the rollout began")
            return
        step = DeviceStep(self, d, entry)
        try:
            async with self.link_factory(entry, plan.device_timeout_s, step.notice) as link:
                await step.run(link)
        except asyncio.CancelledError:
            if self._abort is None:
                raise
            d.reason = f"stopped: {self._abort}"
            self.changed()
        except Exception as err:  # noqa: BLE001 - every failure is this device's verdict, with its words
            why = unreachable_reason(err, plan.device_timeout_s)
            if why is not None:
                self._set(d, "unreachable", why)
            elif isinstance(err, ConsoleError):
                self._set(d, "failed", str(err))
            else:
                self._set(d, "failed", f"{type(err).__name__}: {err}")

    def _set(self, d: DeviceProgress, stage: str, reason: str = "") -> None:
        d.stage = stage  # type: ignore[assignment]
        d.reason = reason
        d.updated_at = time.time()
        self.changed()

    # --- endings --------------------------------------------------------------------------------

    def _finish(self) -> RolloutState:
        state = self.state
        left = [d for d in state.devices if d.stage != "done"]
        if not left:
            state.status, state.abort_reason = "done", ""
        else:
            state.status = "failed"
            names = ", ".join(f"{d.name} ({d.stage})" for d in left[:5]) + (" …" if len(left) > 5 else "")
            state.abort_reason = (
                f"{len(left)} of {len(state.devices)} devices do not run {state.plan.version}: {names}"
            )
            if any(d.stage == "unreachable" for d in left):
                state.abort_reason += (
                    f"; `fieldtui rollout --resume {state.plan.id}` tries the unreachable again"
                )
        self.changed()
        return state

    def _finish_unproven(self, wave: int) -> RolloutState:
        state = self.state
        for d in state.devices:
            if d.stage == "queued":
                d.stage, d.reason = "skipped", f"wave {wave + 1} reached no device"
        state.status = "failed"
        state.abort_reason = (
            f"no device of wave {wave + 1} could be reached, so nothing proved {state.plan.version}; "
            f"nothing more was pushed: `fieldtui rollout --resume {state.plan.id}` tries again"
        )
        self.changed()
        return state

    async def _rollback_all(self) -> None:
        """After an abort: the devices that took the new version go back (unless the plan says not)."""
        state, plan = self.state, self.state.plan
        state.abort_reason = self._abort or "aborted"
        for d in state.devices:
            if d.stage == "queued":
                d.stage, d.reason = "skipped", "the rollout was aborted before this device"
            elif d.stage == "uploading":
                d.stage, d.reason = "skipped", "stopped by the abort before its activation"
            elif d.stage in ("probation", "done") and not d.activated:
                d.reason = f"served {plan.version} before this rollout: left as it was"
        took = [d for d in state.devices if d.activated and d.stage in ("activating", "probation", "done")]
        if plan.rollback_on_abort and took:
            gate = asyncio.Semaphore(self.concurrency)

            async def back(d: DeviceProgress) -> None:
                async with gate:
                    entry = self.devices.find(d.device)
                    if entry is None:
                        return self._set(d, "failed", "forgotten since the rollout began: not rolled back")
                    try:
                        step = DeviceStep(self, d, entry)
                        async with self.link_factory(entry, plan.device_timeout_s, step.notice) as link:
                            await step.roll_back(link)
                    except Exception as err:  # noqa: BLE001 - reported on the device, the others go on
                        why = unreachable_reason(err, plan.device_timeout_s) or str(err)
                        self._set(d, d.stage, f"rollback failed: {why}")

            await asyncio.gather(*(back(d) for d in took))
        elif took:
            for d in took:
                if d.stage == "activating":
                    d.reason = f"stopped by the abort during its activation; {plan.version} may serve"
                else:
                    d.reason = f"kept {plan.version}: --no-rollback-on-abort"
        state.status = "aborted"
        self.changed()


def _failure_reason(failures: list[DeviceProgress], limit: int) -> str:
    first = failures[0]
    return (
        f"{len(failures)} device{'s' if len(failures) > 1 else ''} failed (at most {limit} allowed); "
        f"{first.name}: {first.reason or first.stage}"
    )
