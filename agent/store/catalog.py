"""The model store and its history without a pipeline: what is there, adding and removing versions,
where a rollback would go - and, with no agent serving, making a version current (the offline CLI).

:class:`ModelCatalog` is what ``fieldtui-agent models`` uses when no agent serves from the home;
agent/store/activation.py's ModelManager extends it with the live parts (activation, probation, rollback
jobs) for the serving agent, so both run the same code for everything that does not need frames.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.errors import AgentError, Conflict, NotFound
from agent.store.history import ModelHistory
from agent.store.models import ModelStore, check_version, format_for
from agent.store.probation import health_check
from agent.store.settings import ModelSettings
from agent.store.upload import Upload
from fieldtui.protocol import (
    BAD_VERDICTS,
    DamagedVersion,
    ModelInfo,
    ModelList,
    ModelManifest,
    ModelVersion,
    ProbationStatus,
    PullStatus,
    RollbackPlan,
)
from fieldtui.protocol.offers import key_fingerprint

CONFIGURED = "the configured model"


def good_phrase(version: str | None) -> str:
    return f"last good {version}" if version is not None else f"{CONFIGURED} (last good)"


@dataclass(frozen=True)
class Live:
    """What runs right now (all empty with no agent serving)."""

    running: bool = False
    serving: str | None = None  # the version the pipeline runs; None: the configured model
    standby: str | None = None  # kept loaded for an instant rollback during a probation
    probation: ProbationStatus | None = None
    info: ModelInfo | None = None


class ModelCatalog:
    """See the module docstring."""

    def __init__(
        self,
        store: ModelStore,
        history: ModelHistory,
        *,
        config_model: str | None = None,
        backend: str = "onnxruntime",
    ) -> None:
        self.store = store
        self.history = history
        self.settings: ModelSettings = store.settings
        self.config_model = config_model
        self.backend = backend
        self._lock = threading.RLock()

    def live(self) -> Live:
        return Live()

    # --- reading --------------------------------------------------------------------------------

    @staticmethod
    def label(version: str | None) -> str:
        return version if version is not None else CONFIGURED

    @staticmethod
    def good_label(version: str | None) -> str:
        """Last good as a sentence names it: "last good v2", "the configured model (last good)"."""
        return good_phrase(version)

    def load(self, version: str | None, manifest: ModelManifest | None = None) -> Any:
        """A Detector for ``version`` (None: the configured or demo model), loaded and warmed up."""
        from agent.inference.detector import Detector

        if version is None:
            return Detector.load(self.config_model, backend=self.backend)
        manifest = manifest or self.store.manifest(version)
        detector = Detector.load(self.store.dir(version) / manifest.file, backend=manifest.backend)
        detector.info = detector.info.model_copy(update={"version": version})
        return detector

    def last_good(self, excluding: str | None = None) -> str | None:
        """The newest stored version that passed probation (other than ``excluding``), else None: the
        configured model. A version on probation, superseded, failed or rolled back never is."""
        for version in self.history.good_versions():
            if version != excluding and self.store.has(version):
                return version
        return None

    def rollback_target(self, serving: str | None) -> str | None:
        """Where a rollback goes: last good other than ``serving`` (the configured model when no
        version passed); Conflict when ``serving`` already is the configured model and nothing passed."""
        target = self.last_good(excluding=serving)
        if target is None and serving is None:
            raise Conflict(
                f"nothing to roll back to: {CONFIGURED} serves and no version has passed probation"
            )
        return target

    def rollback_plan(self, serving: str | None) -> RollbackPlan | None:
        """Where a rollback from ``serving`` goes and why; None when the agent would refuse it."""
        try:
            target = self.rollback_target(serving)
        except Conflict:
            return None
        if target is None:
            why = "no other version has passed probation"
        else:
            why = "the newest version that passed probation"
        return RollbackPlan(version=target, label=self.label(target), why=why)

    def bad_twin(self, sha256: str) -> tuple[str, str, str | None] | None:
        """(version, verdict, reason) of a version with these bytes that failed or was rolled back."""
        verdicts = self.history.verdicts()
        for version in self.history.versions_with_sha(sha256):
            verdict, reason, _ = verdicts.get(version, ("never_activated", None, 0))
            if verdict in BAD_VERDICTS:
                return version, verdict, reason
        return None

    def list(self, history: int = 50) -> ModelList:
        live = self.live()
        serving = live.serving
        current = self.store.current()
        # with no agent serving (the offline CLI), a rollback would start from current
        plan = self.rollback_plan(serving if live.running else current)
        target = plan.version if plan is not None else None
        verdicts = self.history.verdicts()
        versions = []
        for manifest in self.store.versions():
            v = manifest.version
            state = "inactive"
            if live.running and v == serving:
                state = "probation" if live.probation is not None else "serving"
            elif v == live.standby:
                state = "standby"
            verdict, why, _ = verdicts.get(v, ("never_activated", None, 0))
            versions.append(
                ModelVersion(
                    version=v,
                    manifest=manifest,
                    current=v == current,
                    serving=live.running and v == serving,
                    state=state,
                    last_good=v == target,
                    verdict=verdict,
                    verdict_reason=why if verdict in (*BAD_VERDICTS, "superseded", "interrupted") else None,
                )
            )
        return ModelList(
            serving=live.info,
            current=current,
            last_good=target,
            rollback=plan,
            versions=versions,
            damaged=[DamagedVersion(version=v, reason=why) for v, why in self.store.damaged()],
            history=self.history.recent(history),
            probation=live.probation,
            pull=self.pull_status(),
            keep=self.settings.keep,
            max_upload_bytes=self.settings.max_upload_bytes,
        )

    def pull_status(self) -> PullStatus | None:
        """Pull mode's configuration and last poll; None when no registry is configured."""
        s = self.settings
        poller = getattr(self, "poller", None)  # set on the serving agent's ModelManager
        registry = s.registry or (poller.url if poller is not None else None)
        if not registry:
            return None
        return PullStatus(
            registry=registry,
            signed=s.registry_key is not None,
            key=key_fingerprint(s.registry_key) if s.registry_key is not None else None,
            last=poller.last if poller is not None else None,
        )

    def describe(self, version: str) -> ModelVersion:
        for item in self.list(history=0).versions:
            if item.version == version:
                return item
        raise NotFound(f"no model version {version!r} on this device; GET /v1/models lists them")

    def check_retry(self, version: str, force: bool) -> None:
        """Conflict naming the earlier reason when ``version`` failed or was rolled back before and
        ``force`` is not given: trying a known-bad model again must be a decision, not a slip."""
        verdict, why, _ = self.history.verdicts().get(version, ("never_activated", None, 0))
        if verdict in BAD_VERDICTS and not force:
            raise Conflict(
                f"{version} {verdict.replace('_', ' ')} before: {why or 'no reason recorded'}; "
                "activate it with --force (?force=true) to try it again"
            )

    # --- uploads --------------------------------------------------------------------------------

    def begin_upload(
        self, version: str, sha256: str, *, size: int | None, fmt: str, source: str, force: bool = False
    ) -> Upload | ModelManifest:
        """An Upload to write into, or the stored manifest when the same bytes are there already.
        Bytes that failed before under another name are refused (Conflict) unless ``force``."""
        existing = self.store.check_new(version, sha256, size)
        if existing is not None:
            return existing
        twin = self.bad_twin(sha256)
        if twin is not None and not force:
            old, verdict, why = twin
            raise Conflict(
                f"{version} has the same sha256 ({sha256[:12]}…) as {old}, which "
                f"{verdict.replace('_', ' ')}: {why or 'no reason recorded'}; nothing was stored "
                "(push with --force, or ?force=true, to store it anyway)"
            )
        details: dict[str, Any] = {"sha256": sha256, "size": size, "source": source}
        if twin is not None:
            details["forced"] = f"same bytes as {twin[0]}, which {twin[1].replace('_', ' ')}"
        row = self.history.add("upload", version, "started", details=details)
        return Upload(
            self.store,
            check_version(version),
            sha256,
            size=size,
            fmt=fmt,
            source=source,
            on_end=lambda outcome, reason: self.history.update(row, outcome, reason),
        )

    def stored(self, manifest: ModelManifest) -> ModelVersion:
        """After an upload committed: prune old versions, describe the new one."""
        self.prune()
        return self.describe(manifest.version)

    def add_file(
        self, path: Path, version: str, sha256: str | None, *, source: str, force: bool = False
    ) -> tuple[ModelVersion, bool]:
        """Store a model file from this machine (the CLI's ``add``): the same path as an upload."""
        from agent.inference.detector import file_sha256

        check_version(version)
        if not path.is_file():
            raise NotFound(f"model file not found: {path}")
        actual = file_sha256(path)
        if sha256 is not None and sha256.lower() != actual:
            raise AgentError(
                f"sha256 mismatch for {path.name}: expected {sha256.lower()}, got {actual}; nothing was stored",
                status=422,
            )
        size = path.stat().st_size
        upload = self.begin_upload(
            version, actual, size=size, fmt=format_for(path.name), source=source, force=force
        )
        if isinstance(upload, ModelManifest):
            return self.describe(version), False
        try:
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    upload.write(block)
        except BaseException as err:
            upload.abort(f"reading {path} failed: {err}")
            raise
        manifest, created = upload.finish()
        return self.stored(manifest), created

    def prune(self) -> list[str]:
        """Remove versions beyond ``keep``: failed and rolled-back ones first, then the oldest; never
        the serving, current, standby, last good or rollback-target one. Each removal is in the history."""
        live = self.live()
        current = self.store.current()
        protect = {live.serving, current, live.standby, self.last_good()}
        with contextlib.suppress(Conflict):
            protect.add(self.rollback_target(live.serving if live.running else current))
        damaged = dict(self.store.damaged())
        verdicts = self.history.verdicts()
        bad = {v for v, (verdict, _, _) in verdicts.items() if verdict in BAD_VERDICTS}
        removed = self.store.prune(protect, first=bad)
        for version in removed:
            verdict, why, _ = verdicts.get(version, ("never_activated", None, 0))
            was = f" ({verdict.replace('_', ' ')}: {why})" if version in bad else ""
            reason = (
                f"pruned: damaged ({damaged[version]})"
                if version in damaged
                else f"pruned{was}: more than {self.settings.keep} versions kept"
            )
            self.history.add("remove", version, "removed", reason=reason)
        return removed

    def remove(self, version: str) -> ModelList:
        """Delete a version that is neither serving, current, nor kept for a rollback in probation."""
        check_version(version)
        if not self.store.has(version):
            raise NotFound(f"no model version {version!r} on this device; GET /v1/models lists them")
        with self._lock:  # the live manager changes what serves under this lock
            live = self.live()
            if live.running and version == live.serving:
                raise Conflict(f"{version} is the model serving now; activate another one before removing it")
            if version == live.standby:
                raise Conflict(f"{version} is kept for an instant rollback during a probation; try after it")
            if version == self.store.current():
                raise Conflict(
                    f"{version} is the model the agent starts with (models/current); activate another first"
                )
            self.store.remove(version)
        self.history.add("remove", version, "removed", reason="removed on request")
        return self.list()

    # --- no agent serving (the CLI on a stopped device) -----------------------------------------

    def activate_offline(self, version: str, *, force: bool = False) -> dict[str, Any]:
        """Make ``version`` current while no agent runs: verified and test-loaded now, health-checked
        on live frames never (there are none); the next start loads it and records the outcome."""
        self.check_retry(check_version(version), force)
        manifest = self.store.verify(version)
        previous = self.store.current()
        with contextlib.closing(self.load(version, manifest)) as detector:
            figures = health_check(
                detector, None, [], self.settings, label=version, current_label=self.label(previous)
            )
        self.store.set_current(version)
        row = self.history.add(
            "activate",
            version,
            "pending",
            previous=previous,
            reason="made current with the agent stopped: loaded at the next start",
            details={"health": figures},
        )
        return self.history.get(row).model_dump(mode="json")  # type: ignore[union-attr]

    def rollback_offline(self) -> dict[str, Any]:
        current = self.store.current()
        target = self.rollback_target(current)
        if target is not None:
            self.store.verify(target)
        replaced = self.history.serving_row(current) if current is not None else None
        self.store.set_current(target)
        if replaced is not None:
            self.history.update(replaced.id, "rolled_back", reason="rolled back with the agent stopped")
        row = self.history.add(
            "rollback", target, "pending", previous=current, reason="rolled back with the agent stopped"
        )
        return self.history.get(row).model_dump(mode="json")  # type: ignore[union-attr]
