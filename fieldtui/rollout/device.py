"""One device's part of a rollout: push, activate, wait for the device's probation verdict; roll back.

Every step starts from what the device says it holds (``models()``), not from what the state file
remembers, so a step cut short (the laptop slept, the console was killed) is picked up where the
device actually is: bytes already there are not sent again, a version already serving is watched
rather than activated again, a verdict already given is taken as it is.

The verdict is the device's own (agent/store/probation.py): ``passed``, or ``failed``/``rolled_back``
with the reason the agent recorded. The console only reads it, every ``poll_s`` (2 s over SSH, where a
read is a command run on the device), from ``GET /v1/models`` (``probation``: version and end time;
``versions[].verdict`` and ``verdict_reason``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Protocol

from fieldtui.config import SavedDevice
from fieldtui.errors import AgentUnreachable, ConsoleError
from fieldtui.link.base import DeviceLink
from fieldtui.protocol import ModelList
from fieldtui.protocol.store import BAD_VERDICTS, ModelVersion
from fieldtui.push import PushProgress
from fieldtui.rollout.plan import DeviceProgress, RolloutState
from fieldtui.ssh import HostKeyChanged, RemoteCommandFailed, SSHError

SSH_POLL_S = 2.0
VERDICT_GRACE_S = 30.0  # past the probation's end (twice, for a quiet source) before giving up on a verdict


class Runner(Protocol):
    """What a step needs of its :class:`~fieldtui.rollout.runner.RolloutRunner`."""

    state: RolloutState
    poll_s: float

    def changed(self, save: bool = True) -> None: ...


def unreachable_reason(err: BaseException, timeout: float) -> str | None:
    """The reason to report when ``err`` means the device could not be reached; None otherwise."""
    if isinstance(err, asyncio.TimeoutError):
        return f"no answer within {timeout:g} s (the device timeout)"
    if isinstance(err, AgentUnreachable):
        return str(err)
    if isinstance(err, SSHError) and not isinstance(err, (RemoteCommandFailed, HostKeyChanged)):
        return str(err)
    return None


def _label(version: str | None) -> str:
    return version or "the configured model"


def _find(listing: ModelList, version: str) -> ModelVersion | None:
    return next((v for v in listing.versions if v.version == version), None)


class DeviceStep:
    """Runs one device of ``runner``'s rollout through one link."""

    def __init__(self, runner: Runner, progress: DeviceProgress, entry: SavedDevice) -> None:
        self.runner = runner
        self.d = progress
        self.entry = entry
        self.plan = runner.state.plan
        self._saved_percent = -1

    # --- helpers --------------------------------------------------------------------------------

    def notice(self, line: str) -> None:
        """The link left HTTP for SSH: kept as the device's ``link_note`` (its ``via`` then says ssh)."""
        self.d.link_note = line
        self.runner.changed(save=False)

    def _via(self, link: DeviceLink) -> None:
        via = "ssh" if link.kind == "ssh" else "http"
        if self.d.via != via:
            self.d.via = via  # type: ignore[assignment]

    def _stage(self, stage: str, reason: str = "", save: bool = True) -> None:
        self.d.stage = stage  # type: ignore[assignment]
        self.d.reason = reason
        self.d.updated_at = time.time()
        self.runner.changed(save=save)

    async def _models(self, link: DeviceLink) -> ModelList:
        listing = await asyncio.wait_for(link.models(), self.plan.device_timeout_s)
        self._via(link)
        return listing

    def _poll_s(self, link: DeviceLink) -> float:
        return max(self.runner.poll_s, SSH_POLL_S) if link.kind == "ssh" else self.runner.poll_s

    def _progress(self, p: PushProgress) -> None:
        if p.phase != "uploading" or not p.total:
            return
        self.d.percent = round(100.0 * p.done / p.total, 1)
        bucket = int(self.d.percent // 10)
        # Saved at every tenth (a big model must not rewrite the file per megabyte); shown at every chunk.
        self.runner.changed(save=bucket != self._saved_percent)
        self._saved_percent = bucket

    # --- the rollout step -----------------------------------------------------------------------

    async def run(self, link: DeviceLink) -> None:
        d, plan = self.d, self.plan
        listing = await self._models(link)
        serving = listing.serving.version if listing.serving else None
        mine = _find(listing, plan.version)
        if mine is not None and mine.manifest.sha256 != plan.sha256:
            raise ConsoleError(
                f"version {plan.version} is already on the device with other bytes (sha256 "
                f"{mine.manifest.sha256[:12]}…, this rollout's {plan.sha256[:12]}…); roll out under a new version name"
            )
        if d.stage == "queued" and serving != plan.version:
            d.previous_version = serving
        if mine is not None:
            d.pushed = True
        if serving == plan.version:
            if d.stage == "queued":  # it served this version before the rollout began
                d.reason = f"already served {plan.version}"
            return await self.watch(link)
        if mine is not None and mine.verdict in BAD_VERDICTS:
            stage = "rolled_back" if d.stage in ("activating", "probation") else "failed"
            before = (
                "" if stage == "rolled_back" else " before this rollout (it does not force a known-bad model)"
            )
            return self._stage(
                stage, f"{mine.verdict.replace('_', ' ')}{before}: {mine.verdict_reason or '?'}"
            )
        if not d.pushed:
            d.percent = 0.0
            self._stage("uploading")
            result = await link.push(Path(plan.model), plan.version, on_progress=self._progress)
            self._via(link)
            d.pushed, d.percent = True, 100.0
            if result.version.manifest.sha256 != plan.sha256:  # the device's own hash of what it stored
                raise ConsoleError(f"the device stored other bytes than {plan.model} (sha256 mismatch)")
        d.activated = True  # saved with the stage, before the request: a resumed rollout rolls it back too
        self._stage("activating", f"was serving {_label(d.previous_version)}")
        job = await link.activate(plan.version)
        self._via(link)
        if job.state != "succeeded":
            error = job.error or "no reason given"
            if "keeps serving" not in error:
                error += f" ({_label(d.previous_version)} keeps serving)"
            return self._stage("failed", f"activation {job.state}: {error}")
        await self.watch(link, activated=job.result or {})

    async def watch(self, link: DeviceLink, activated: dict[str, Any] | None = None) -> None:
        """Read the device until its verdict on the new version (and the soak) is in."""
        d, plan = self.d, self.plan
        begun = time.time()
        last_answer = time.monotonic()
        while True:
            try:
                listing = await self._models(link)
                last_answer = time.monotonic()
            except Exception as err:  # noqa: BLE001 - a device may drop for a moment during its probation
                if unreachable_reason(err, plan.device_timeout_s) is None:
                    raise
                if time.monotonic() - last_answer > plan.device_timeout_s:
                    raise
                await asyncio.sleep(self._poll_s(link))
                continue
            serving = listing.serving.version if listing.serving else None
            mine = _find(listing, plan.version)
            verdict = mine.verdict if mine is not None else "never_activated"
            p = listing.probation
            if p is not None and p.version == plan.version:
                if d.stage != "probation" or d.probation_ends_at != p.ends:
                    d.probation_ends_at = p.ends
                    d.serving_since = d.serving_since or p.started
                    self._stage("probation", f"judged against {_label(p.last_good)}")
            elif d.serving_since is None and serving == plan.version:
                d.serving_since = time.time()
            if verdict in BAD_VERDICTS:
                reason = mine.verdict_reason if mine is not None else None
                return self._stage("rolled_back", reason or f"{plan.version} {verdict.replace('_', ' ')}")
            if verdict == "pending":  # over SSH with the agent stopped: current, judged at its next start
                return self._stage(
                    "unreachable",
                    f"the agent is not running: {plan.version} is made current and is checked when it starts",
                )
            if verdict == "superseded":
                return self._stage(
                    "failed", mine.verdict_reason if mine else "another activation superseded it"
                )
            if verdict == "passed":
                if serving != plan.version:
                    return self._stage("rolled_back", f"passed, then {_label(serving)} was activated over it")
                left = (d.serving_since or begun) + (plan.soak_s or 0.0) - time.time()
                if left <= 0:
                    note = "passed probation" + (f" and {plan.soak_s:g} s soak" if plan.soak_s else "")
                    return self._stage("done", note)
                if d.reason != "soaking":
                    self._stage("probation", "soaking")
            elif (activated or {}).get("outcome") == "unchanged" and serving == plan.version and p is None:
                return self._stage("done", "already served")
            ends = d.probation_ends_at or begun
            if time.time() > ends + max(ends - (d.serving_since or begun), 0) + VERDICT_GRACE_S:
                return self._stage("failed", f"no probation verdict from the device by {time.ctime(ends)}")
            await asyncio.sleep(self._poll_s(link))

    # --- the abort --------------------------------------------------------------------------------

    async def roll_back(self, link: DeviceLink) -> None:
        """After an abort: back to the last good model if the device serves this rollout's version (the
        state's ``abort_reason`` says why)."""
        d, plan = self.d, self.plan
        deadline = time.monotonic() + plan.device_timeout_s
        while True:
            listing = await self._models(link)
            serving = listing.serving.version if listing.serving else None
            mine = _find(listing, plan.version)
            verdict = mine.verdict if mine is not None else "never_activated"
            if serving == plan.version:
                job = await link.rollback()
                self._via(link)
                if job.state != "succeeded":
                    return self._stage(d.stage, f"rollback {job.state}: {job.error or '?'}")
                target = (job.result or {}).get("version")
                return self._stage("rolled_back", f"back on {_label(target)}: the rollout was aborted")
            if verdict in BAD_VERDICTS:
                return self._stage("rolled_back", mine.verdict_reason if mine else verdict)
            # An activation submitted before the abort may still swap in: watch it for a moment.
            if d.stage != "activating" or time.monotonic() > deadline:
                break
            await asyncio.sleep(self._poll_s(link))
        if d.stage == "activating":
            return self._stage("skipped", f"stopped by the abort; {_label(serving)} keeps serving")
        self._stage(
            d.stage, f"no longer serves {plan.version} ({_label(serving)} does): nothing to roll back"
        )
