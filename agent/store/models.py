"""The model store: versions on disk, staged uploads, manifests, the ``current`` pointer, pruning. No HTTP.

::

    models/<version>/model.onnx     the model (.engine, .hef for their backends)
    models/<version>/manifest.json  sha256, size, format, I/O spec, names, created, source
    models/current -> <version>     relative symlink, replaced by rename: the model the agent starts with
    models/.staging/                uploads in progress and versions being deleted; emptied at start
    models/.lock                    flock held by the serving agent (and by the offline CLI)

A version enters the store only complete and checked (agent/store/upload.py): the bytes are streamed
into a staging folder while being hashed, the size and sha256 compared with what the sender announced,
the model loaded and its I/O checked, the manifest written, everything fsynced, and only then is the
staging folder renamed to ``models/<version>`` - one atomic step, so a crash before it leaves nothing,
after it everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from agent.core.errors import AgentError, Conflict, ModelError, NotFound
from agent.core.faults import fault_point
from agent.store.settings import ModelSettings
from fieldtui.protocol import ModelManifest
from fieldtui.protocol.files import fsync_dir

log = logging.getLogger("fieldtui.agent.models")

VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RESERVED = frozenset({"current", "rollback"})
VERSION_RULE = "1-64 letters, digits, '.', '_', '-' or '+', starting with a letter or digit"
# format -> (backend key, file suffix)
FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("onnxruntime", ".onnx"),
    "engine": ("tensorrt", ".engine"),
    "hef": ("hailo", ".hef"),
    "tflite": ("litert", ".tflite"),
}
MANIFEST = "manifest.json"
CHUNK = 1 << 20


class VersionNameError(AgentError):
    status = 422


class UploadTooLarge(AgentError):
    status = 413


def check_version(name: str) -> str:
    """``name`` if it may name a version (it becomes a folder name), else VersionNameError saying why."""
    shown = repr(name) if len(name) <= 80 else repr(name[:80]) + "..."
    if "\x00" in name:
        why = "contains a NUL character"
    elif "/" in name or "\\" in name:
        why = "contains a path separator"
    elif ".." in name:
        why = "contains '..'"
    elif len(name) > 64:
        why = f"is {len(name)} characters long (at most 64)"
    elif name in RESERVED:
        why = "is a reserved word"
    elif not VERSION_RE.fullmatch(name):
        why = "has a character that is not allowed" if name else "is empty"
    else:
        return name
    raise VersionNameError(f"version name {shown} {why}; use {VERSION_RULE}, like v7 or 2024.06.1")


def check_sha256(text: str | None) -> str:
    value = (text or "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise AgentError(
            "X-Model-Sha256 must be the model's sha256 in 64 hex digits (`sha256sum FILE` prints it)",
            status=400,
        )
    return value


def format_for(name: str) -> str:
    """The model format of a file name (``.onnx``, ``.engine``, ``.hef``, ``.tflite``) or a format name."""
    key = name.lower().rsplit(".", 1)[-1]
    if key not in FORMATS:
        raise ModelError(
            f"unknown model format {name!r}: the store takes .onnx, .engine (TensorRT), .hef (Hailo) or .tflite (LiteRT)"
        )
    return key


class ModelStore:
    """The ``models/`` folder of an agent home. Methods are safe to call from several threads."""

    def __init__(self, root: Path, settings: ModelSettings | None = None) -> None:
        import threading

        self.root = Path(root)
        self.settings = settings or ModelSettings()
        self.staging = self.root / ".staging"
        self.current_link = self.root / "current"
        self.lock_file = self.root / ".lock"
        self._lock = threading.RLock()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- reading ---------------------------------------------------------------------------------

    def dir(self, version: str) -> Path:
        return self.root / check_version(version)

    def has(self, version: str) -> bool:
        return (self.dir(version) / MANIFEST).is_file()

    def manifest(self, version: str) -> ModelManifest:
        path = self.dir(version) / MANIFEST
        try:
            return ModelManifest.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(
                f"no model version {version!r} on this device; GET /v1/models lists them"
            ) from None
        except (OSError, ValueError) as err:
            raise ModelError(f"the manifest of {version} is unreadable ({err}); remove the version") from None

    def model_path(self, version: str) -> Path:
        return self.dir(version) / self.manifest(version).file

    def versions(self) -> list[ModelManifest]:
        """Every complete version, newest first (one whose manifest is unreadable is in :meth:`damaged`)."""
        found = []
        for entry in self._folders():
            with contextlib.suppress(AgentError):
                found.append(self.manifest(entry.name))
        return sorted(found, key=lambda m: (m.created, m.version), reverse=True)

    def damaged(self) -> list[tuple[str, str]]:
        """(version, why) for each version folder whose manifest exists but cannot be read: never
        loaded, shown with the reason, removable by delete and prune."""
        found = []
        for entry in self._folders():
            if not (entry / MANIFEST).is_file():
                continue  # not a version: a leftover that clean_staging removes
            try:
                self.manifest(entry.name)
            except AgentError as err:
                found.append((entry.name, str(err)))
        return sorted(found)

    def _folders(self) -> list[Path]:
        return [
            entry
            for entry in (self.root.iterdir() if self.root.is_dir() else [])
            if not entry.name.startswith(".") and entry.name not in RESERVED and entry.is_dir()
        ]

    def verify(self, version: str) -> ModelManifest:
        """The manifest, after checking the file's size and sha256 against it (ModelError if damaged)."""
        manifest = self.manifest(version)
        path = self.dir(version) / manifest.file
        try:
            size = path.stat().st_size
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while block := f.read(CHUNK):
                    digest.update(block)
        except OSError as err:
            raise ModelError(
                f"{version}'s model file cannot be read ({err.strerror}); push it again"
            ) from None
        if size != manifest.size or digest.hexdigest() != manifest.sha256:
            raise ModelError(
                f"{version} is damaged on disk: sha256 {digest.hexdigest()[:12]}… ({size} bytes), the "
                f"manifest says {manifest.sha256[:12]}… ({manifest.size} bytes); push it again"
            )
        return manifest

    def current(self) -> str | None:
        """The version ``current`` points at, or None (no link, or a link to nothing valid)."""
        try:
            target = os.readlink(self.current_link)
        except (FileNotFoundError, OSError):
            return None
        try:
            return target if self.has(target) else None
        except VersionNameError:
            log.warning("models/current points at %r, which is not a version; ignoring it", target)
            return None

    # --- changing --------------------------------------------------------------------------------

    def check_new(self, version: str, sha256: str, size: int | None) -> ModelManifest | None:
        """Before reading an upload: the existing manifest when the same bytes are already stored
        (idempotent), Conflict for different bytes, UploadTooLarge over the limit; None to go on."""
        check_version(version)
        limit = self.settings.max_upload_bytes
        if size is not None and size > limit:
            raise UploadTooLarge(
                f"{version} is {size} bytes, over this device's limit of {limit} bytes; nothing was "
                "read (raise [models] max_upload_mb in the agent's config.toml if it is right)"
            )
        if self.has(version):
            existing = self.manifest(version)
            if existing.sha256 == sha256:
                return existing
            raise Conflict(
                f"version {version} is already on the device with other bytes (sha256 "
                f"{existing.sha256[:12]}…, yours {sha256[:12]}…); push under a new version name"
            )
        return None

    def _commit(self, staged: Path, manifest: ModelManifest) -> bool:
        """Rename a complete staging folder to ``models/<version>``; False when the same bytes were
        already there (a concurrent identical push), Conflict for different ones."""
        with self._lock:
            target = self.dir(manifest.version)
            if self.has(manifest.version):
                existing = self.manifest(manifest.version)
                shutil.rmtree(staged, ignore_errors=True)
                if existing.sha256 == manifest.sha256:
                    return False
                raise Conflict(
                    f"version {manifest.version} was stored with other bytes meanwhile; push under a new name"
                )
            if target.exists():  # a folder without a manifest: not a version, a leftover
                shutil.rmtree(target, ignore_errors=True)
            fault_point("before_rename", manifest.version)
            os.rename(staged, target)
            fsync_dir(self.root)
            fault_point("after_rename", manifest.version)
        log.info(
            "stored model %s (%d bytes, sha256 %s…)", manifest.version, manifest.size, manifest.sha256[:12]
        )
        return True

    def set_current(self, version: str | None) -> None:
        """Point ``current`` at ``version`` (None: remove it) in one atomic rename."""
        with self._lock:
            if version is None:
                with contextlib.suppress(FileNotFoundError):
                    self.current_link.unlink()
            else:
                if not self.has(version):
                    raise NotFound(f"no model version {version!r} to make current")
                tmp = self.root / f".current.{uuid.uuid4().hex[:8]}.tmp"
                os.symlink(version, tmp)
                try:
                    os.replace(tmp, self.current_link)
                except BaseException:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                    raise
            fsync_dir(self.root)

    def remove(self, version: str) -> None:
        """Delete a version: renamed out of sight first (atomic), then its files removed."""
        with self._lock:
            src = self.dir(version)
            if not src.exists():
                raise NotFound(f"no model version {version!r} on this device")
            self.staging.mkdir(mode=0o700, exist_ok=True)
            doomed = self.staging / f"{version}.{uuid.uuid4().hex[:8]}.removed"
            os.rename(src, doomed)
            fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("removed model %s", version)

    def prune(self, protect: set[str | None], first: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Remove damaged versions, then versions beyond ``settings.keep``, never one in ``protect``:
        those in ``first`` (failed ones) before the others, oldest first within each."""
        removed: list[str] = []
        for version, _ in self.damaged():
            if version not in protect:
                self.remove(version)
                removed.append(version)
        versions = self.versions()
        excess = len(versions) - self.settings.keep
        oldest = list(reversed(versions))
        for manifest in sorted(oldest, key=lambda m: m.version not in first):  # stable: oldest first
            if excess <= 0:
                break
            if manifest.version in protect:
                continue
            self.remove(manifest.version)
            removed.append(manifest.version)
            excess -= 1
        return removed

    def clean_staging(self) -> int:
        """Remove what a killed agent left half-done: staged uploads, deletions, temporary links."""
        count = 0
        if self.staging.is_dir():
            for entry in self.staging.iterdir():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                count += 1
        for tmp in self.root.glob(".current.*.tmp"):
            tmp.unlink(missing_ok=True)
            count += 1
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or entry.name in RESERVED or entry.is_symlink():
                continue
            if entry.is_dir() and not (entry / MANIFEST).is_file():
                shutil.rmtree(entry, ignore_errors=True)  # not a version: no manifest, never committed
                count += 1
        if count:
            log.info("removed %d leftover(s) of interrupted uploads from %s", count, self.staging)
        return count


class StoreLock:
    """An exclusive ``flock`` on ``models/.lock``: the serving agent holds it for its lifetime, and the
    offline ``fieldtui-agent models`` commands take it, so the two never change the store at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
