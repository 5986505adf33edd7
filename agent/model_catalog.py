"""The model store and its history without a pipeline: what is there, adding and removing versions,
where a rollback would go - and, with no agent serving, making a version current (the offline CLI).

:class:`ModelCatalog` is what ``fieldtui-agent models`` uses when no agent serves from the home;
agent/activation.py's ModelManager extends it with the live parts (activation, probation, rollback
jobs) for the serving agent, so both run the same code for everything that does not need frames.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import AgentError, Conflict, NotFound
from agent.model_history import ModelHistory
from agent.model_settings import ModelSettings
from agent.model_upload import Upload
from agent.models import ModelStore, check_version, format_for
from agent.probation import health_check
from fieldtui.protocol import ModelInfo, ModelList, ModelManifest, ModelVersion, ProbationStatus

CONFIGURED = "the configured model"


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

    def load(self, version: str | None, manifest: ModelManifest | None = None) -> Any:
        """A Detector for ``version`` (None: the configured or demo model), loaded and warmed up."""
        from agent.detector import Detector

        if version is None:
            return Detector.load(self.config_model, backend=self.backend)
        manifest = manifest or self.store.manifest(version)
        detector = Detector.load(self.store.dir(version) / manifest.file, backend=manifest.backend)
        detector.info = detector.info.model_copy(update={"version": version})
        return detector

    def rollback_target(self, serving: str | None) -> str | None:
        """Where a rollback goes: the most recently proven version other than ``serving``, else the
        configured model; Conflict when ``serving`` already is the configured model and nothing else is."""
        for version in self.history.good_versions():
            if version != serving and self.store.has(version):
                return version
        if serving is None:
            raise Conflict(f"nothing to roll back to: {CONFIGURED} serves and no earlier version proved good")
        return None

    def list(self, history: int = 50) -> ModelList:
        live = self.live()
        serving = live.serving
        current = self.store.current()
        try:  # with no agent serving (the offline CLI), a rollback would start from current
            target: str | None = self.rollback_target(serving if live.running else current)
        except Conflict:
            target = None
        versions = []
        for manifest in self.store.versions():
            v = manifest.version
            state = "inactive"
            if live.running and v == serving:
                state = "probation" if live.probation is not None else "serving"
            elif v == live.standby:
                state = "standby"
            versions.append(
                ModelVersion(
                    version=v,
                    manifest=manifest,
                    current=v == current,
                    serving=live.running and v == serving,
                    state=state,
                    last_good=v == target,
                )
            )
        return ModelList(
            serving=live.info,
            current=current,
            last_good=target,
            versions=versions,
            history=self.history.recent(history),
            probation=live.probation,
            keep=self.settings.keep,
            max_upload_bytes=self.settings.max_upload_bytes,
            pull=getattr(getattr(self, "poller", None), "last", None),
        )

    def describe(self, version: str) -> ModelVersion:
        for item in self.list(history=0).versions:
            if item.version == version:
                return item
        raise NotFound(f"no model version {version!r} on this device; GET /v1/models lists them")

    # --- uploads --------------------------------------------------------------------------------

    def begin_upload(
        self, version: str, sha256: str, *, size: int | None, fmt: str, source: str
    ) -> Upload | ModelManifest:
        """An Upload to write into, or the stored manifest when the same bytes are there already."""
        existing = self.store.check_new(version, sha256, size)
        if existing is not None:
            return existing
        row = self.history.add(
            "upload", version, "started", details={"sha256": sha256, "size": size, "source": source}
        )
        return self.store.begin_upload(
            version,
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
        self, path: Path, version: str, sha256: str | None, *, source: str
    ) -> tuple[ModelVersion, bool]:
        """Store a model file from this machine (the CLI's ``add``): the same path as an upload."""
        from agent.detector import file_sha256

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
        upload = self.begin_upload(version, actual, size=size, fmt=format_for(path.name), source=source)
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
        """Remove the oldest versions beyond ``keep``; never the serving, current, standby or
        rollback-target one."""
        live = self.live()
        current = self.store.current()
        protect = {live.serving, current, live.standby}
        with contextlib.suppress(Conflict):
            protect.add(self.rollback_target(live.serving if live.running else current))
        removed = self.store.prune(protect)
        for version in removed:
            self.history.add(
                "remove", version, "removed", reason=f"pruned: more than {self.settings.keep} versions kept"
            )
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

    def activate_offline(self, version: str) -> dict[str, Any]:
        """Make ``version`` current while no agent runs: verified and test-loaded now, health-checked
        on live frames never (there are none); the next start loads it and records the outcome."""
        manifest = self.store.verify(check_version(version))
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
