"""The engine store: runtime-specific builds of a model, each with what it was built with and for.

::

    engines/<key>/model.onnx|model.engine|model.hef   the engine
    engines/<key>/fingerprint.json                     runtime, device, source sha256, precision, shape
    engines/<key>/engine.json                          what the build measured (p50s, agreement, versions)
    engines/.staging/                                  builds in progress; emptied at start

``<key>`` is :func:`engine_key` (``onnxruntime-int8-3f2a9c1b7d4e``): one engine per runtime, precision
and source model, so a rebuild replaces the engine it supersedes. An engine enters the store only
complete: it is built into a staging folder, fsynced, and the folder renamed to ``engines/<key>`` in one
step. Listing compares every fingerprint with what this device offers (agent/engines/fingerprint.py), so a stale
engine is reported with the reason before anything tries to load it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.core.errors import AgentError, NotFound
from agent.engines.fingerprint import read_fingerprint, stale_reason, write_fingerprint
from fieldtui.protocol import EngineFingerprint, EngineInfo, RuntimeIdentity
from fieldtui.protocol.files import atomic_write, fsync_dir

log = logging.getLogger("fieldtui.agent.engines")

META = "engine.json"
ENGINE_FILES = ("model.onnx", "model.engine", "model.hef")
SUFFIX = {"onnxruntime": ".onnx", "tensorrt": ".engine", "hailo": ".hef"}


def engine_key(runtime: str, precision: str, sha256: str) -> str:
    return f"{runtime}-{precision}-{sha256[:12]}"


def engine_file_name(runtime: str) -> str:
    return "model" + SUFFIX.get(runtime, ".bin")


# --- what this device offers each runtime ----------------------------------------------------------


def identity(key: str) -> RuntimeIdentity:
    """What this device offers runtime ``key`` (one of agent.inference.backends.known_keys())."""
    from agent.inference.backends import get_backend

    return get_backend(key).identity()


def identities() -> list[RuntimeIdentity]:
    from agent.inference.backends import known_keys

    return [identity(k) for k in known_keys()]


def find_engine(
    store: EngineStore, model: Path, runtime: str, precision: str, sha256: str | None = None
) -> tuple[Path | None, str | None]:
    """For benchmarks: the fresh engine built from ``model`` for (runtime, precision) -> (path, None);
    a stale one -> (None, why and how to rebuild); none -> (None, None)."""
    from agent.inference.detector import file_sha256

    info = store.find(sha256 or file_sha256(model), runtime, precision, identity(runtime))
    if info is None:
        return None, None
    if info.stale:
        return None, (
            f"{precision} on {runtime}: engine {info.key} is stale ({info.stale_reason}); "
            f"`fieldtui-agent engines rebuild --backend {runtime} --precision {precision}`"
        )
    return store.path(info.key), None


# --- the store -------------------------------------------------------------------------------------


class Staged:
    """A build in progress: write the engine at :attr:`engine_path`, then :meth:`EngineStore.commit`.
    Discarded (folder and all) by :meth:`discard` or when used as a context manager that exits on error."""

    def __init__(self, store: EngineStore, key: str, runtime: str) -> None:
        self.store, self.key = store, key
        store.staging.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir = store.staging / f"{key}.{uuid.uuid4().hex[:12]}.part"
        self.dir.mkdir(mode=0o700)
        self.engine_path = self.dir / engine_file_name(runtime)
        self.work = self.dir / "work"  # intermediate models; removed before the commit
        self.work.mkdir()
        self.done = False

    def discard(self) -> None:
        if not self.done:
            self.done = True
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.discard()


class EngineStore:
    """The ``engines/`` folder of an agent home. Safe to use from several threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.staging = self.root / ".staging"
        self._lock = threading.RLock()

    # --- reading -----------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """The engine file of ``key``; NotFound when there is no such engine."""
        if "/" in key or key.startswith(".") or not key:
            raise NotFound(f"no engine {key!r}: GET /v1/engines lists them")
        folder = self.root / key
        for name in ENGINE_FILES:
            if (folder / name).is_file():
                return folder / name
        raise NotFound(f"no engine {key!r} on this device: GET /v1/engines lists them")

    def _read(self, folder: Path, here: dict[str, RuntimeIdentity] | None) -> EngineInfo | None:
        engine = next((folder / n for n in ENGINE_FILES if (folder / n).is_file()), None)
        if engine is None:
            return None
        try:
            fingerprint = read_fingerprint(engine)
        except AgentError as err:
            log.warning("engine %s: %s", folder.name, err)
            return None
        if fingerprint is None:
            return None
        meta: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((folder / META).read_text())
        reason = None
        if here is not None:
            ident = here.get(fingerprint.runtime)
            if ident is None:
                reason = f"this agent has no {fingerprint.runtime} runtime"
            else:
                reason = stale_reason(fingerprint, ident)
        return EngineInfo(
            key=folder.name,
            file=engine.name,
            size=engine.stat().st_size,
            fingerprint=fingerprint,
            stale=reason is not None,
            stale_reason=reason,
            **{k: meta.get(k) for k in ("source_version", "model_version", "p50_ms", "fp32_p50_ms", "agreement_f1")},
        )  # fmt: skip

    def list(self, here: Iterable[RuntimeIdentity] | None = None) -> list[EngineInfo]:
        """Every complete engine, newest build first, stale flags against ``here`` (None: not checked)."""
        by_runtime = {i.runtime: i for i in here} if here is not None else None
        found = []
        for folder in self.root.iterdir() if self.root.is_dir() else []:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            info = self._read(folder, by_runtime)
            if info is not None:
                found.append(info)
        return sorted(found, key=lambda e: (e.fingerprint.built or 0.0, e.key), reverse=True)

    def get(self, key: str, here: Iterable[RuntimeIdentity] | None = None) -> EngineInfo:
        by_runtime = {i.runtime: i for i in here} if here is not None else None
        info = self._read(self.root / key, by_runtime) if (self.root / key).is_dir() else None
        if info is None:
            raise NotFound(f"no engine {key!r} on this device: GET /v1/engines lists them")
        return info

    def find(
        self, source_sha256: str, runtime: str, precision: str, here: RuntimeIdentity | None = None
    ) -> EngineInfo | None:
        """The engine built from ``source_sha256`` for (runtime, precision), stale-checked against
        ``here`` when given; None when there is none."""
        key = engine_key(runtime, precision, source_sha256)
        folder = self.root / key
        if not folder.is_dir():
            return None
        info = self._read(folder, {here.runtime: here} if here is not None else None)
        if info is None or info.fingerprint.source_sha256 != source_sha256:
            return None
        return info

    # --- changing ----------------------------------------------------------------------------

    def stage(self, key: str, runtime: str) -> Staged:
        return Staged(self, key, runtime)

    def commit(self, staged: Staged, fingerprint: EngineFingerprint, meta: dict[str, Any]) -> EngineInfo:
        """Write the fingerprint and the meta beside the staged engine, fsync, and rename the folder to
        ``engines/<key>`` (replacing an older build of the same key). Nothing is half-written: before
        the rename the old engine (if any) is untouched, after it the new one is complete."""
        if not staged.engine_path.is_file():
            staged.discard()
            raise AgentError(
                f"the build of {staged.key} wrote no engine file; nothing was stored", status=500
            )
        shutil.rmtree(staged.work, ignore_errors=True)
        write_fingerprint(staged.engine_path, fingerprint)
        (staged.dir / META).write_text(json.dumps(meta, indent=2) + "\n")
        for path in staged.dir.iterdir():  # the engine, its fingerprint, meta and a backend's sidecars
            if path.is_file():
                with path.open("rb") as f:
                    os.fsync(f.fileno())
        fsync_dir(staged.dir)
        target = self.root / staged.key
        with self._lock:
            old = None
            if target.exists():
                old = self.staging / f"{staged.key}.{uuid.uuid4().hex[:8]}.replaced"
                os.rename(target, old)
            os.rename(staged.dir, target)
            staged.done = True
            fsync_dir(self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log.info("stored engine %s (%d bytes)", staged.key, (target / staged.engine_path.name).stat().st_size)
        return self.get(staged.key)

    def update_meta(self, key: str, **fields: Any) -> None:
        """Add fields to an engine's ``engine.json`` (e.g. the model version it was activated as)."""
        path = self.root / key / META
        with self._lock:
            meta: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(path.read_text())
            atomic_write(path, json.dumps(meta | fields, indent=2) + "\n", mode=0o644)

    def remove(self, key: str) -> None:
        """Delete an engine: renamed out of sight first (atomic), then removed."""
        self.path(key)  # NotFound for an unknown key
        with self._lock:
            self.staging.mkdir(mode=0o700, parents=True, exist_ok=True)
            doomed = self.staging / f"{key}.{uuid.uuid4().hex[:8]}.removed"
            os.rename(self.root / key, doomed)
            fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("removed engine %s", key)

    def clean_staging(self) -> int:
        """Remove what an interrupted build left (a killed agent); returns how many entries."""
        count = 0
        if self.staging.is_dir():
            for entry in self.staging.iterdir():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                count += 1
        if count:
            log.info("removed %d leftover(s) of interrupted engine builds", count)
        return count
