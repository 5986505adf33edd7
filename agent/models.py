"""The model store: versions on disk, staged uploads, manifests, the ``current`` pointer, pruning. No HTTP.

::

    models/<version>/model.onnx     the model (.engine, .hef for their backends)
    models/<version>/manifest.json  sha256, size, format, I/O spec, names, created, source
    models/current -> <version>     relative symlink, replaced by rename: the model the agent starts with
    models/.staging/                uploads in progress and versions being deleted; emptied at start
    models/.lock                    flock held by the serving agent (and by the offline CLI)

A version enters the store only complete and checked: the bytes are streamed into a staging folder
while being hashed, the size and sha256 compared with what the sender announced, the model loaded and
its I/O checked, the manifest written, everything fsynced, and only then is the staging folder renamed
to ``models/<version>`` - one atomic step, so a crash before it leaves nothing, after it everything.
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
from collections.abc import Callable
from pathlib import Path

from agent.errors import AgentError, Conflict, ModelError, NotFound
from agent.faults import fault_point
from agent.home import _fsync_dir
from agent.model_settings import ModelSettings
from fieldtui.protocol import ModelManifest, TensorInfo

log = logging.getLogger("fieldtui.agent.models")

VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RESERVED = frozenset({"current", "rollback"})
VERSION_RULE = "1-64 letters, digits, '.', '_', '-' or '+', starting with a letter or digit"
# format -> (backend key, file suffix)
FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("onnxruntime", ".onnx"),
    "engine": ("tensorrt", ".engine"),
    "hef": ("hailo", ".hef"),
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
    """The model format of a file name (``.onnx``, ``.engine``, ``.hef``) or a format name."""
    key = name.lower().rsplit(".", 1)[-1]
    if key not in FORMATS:
        raise ModelError(
            f"unknown model format {name!r}: the store takes .onnx, .engine (TensorRT) or .hef (Hailo)"
        )
    return key


def sniff_onnx(head: bytes) -> str | None:
    """Why ``head`` (a file's first bytes) cannot start an ONNX model, or None when it may.

    An ONNX file is a protobuf ModelProto; every exporter writes field 1 (``ir_version``, a small
    varint) first, so the first byte is 0x08. Checking that turns "not a model" into a clear line
    before the runtime is asked to parse hundreds of megabytes.
    """
    if len(head) >= 2 and head[0] == 0x08 and 1 <= head[1] <= 20:
        return None
    looks = {
        b"PK": "a zip archive (a PyTorch .pt checkpoint? export it to ONNX first)",
        b"<": "HTML or XML (a web page saved instead of the model?)",
        b"{": "JSON text",
        b"\x89HDF": "a Keras/HDF5 file (export it to ONNX first)",
        b"\x80": "a Python pickle (a PyTorch checkpoint? export it to ONNX first)",
    }
    for magic, what in looks.items():
        if head.startswith(magic):
            return f"it looks like {what}"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "it is plain text"
    return "it does not start like an ONNX protobuf"


def _tensors(specs) -> list[TensorInfo]:
    return [TensorInfo(name=s.name, shape=list(s.shape), dtype=str(s.dtype)) for s in specs]


def inspect_model(path: Path, fmt: str, *, version: str) -> dict:
    """Load ``path`` as its backend would and check that it is a detector the pipeline understands:
    the manifest fields it yields. ModelError (422) saying why otherwise."""
    from agent.detector import Detector
    from agent.errors import BackendUnavailable

    backend, _ = FORMATS[fmt]
    if fmt == "onnx":
        with path.open("rb") as f:
            why = sniff_onnx(f.read(64))
        if why:
            raise ModelError(f"{version} is not an ONNX model: {why}")
    try:
        detector = Detector.load(path, backend=backend)
    except BackendUnavailable as err:
        raise ModelError(
            f"{version} is a .{fmt} model, which this device cannot load ({err}); push the .onnx instead"
        ) from None
    except ModelError as err:
        raise ModelError(f"{version} is not a usable detector: {err}") from None
    try:
        info = detector.info
        return {
            "backend": info.backend,
            "layout": info.layout,
            "input_shape": list(info.input_shape),
            "input_dtype": info.input_dtype,
            "inputs": _tensors(detector.backend.inputs),
            "outputs": _tensors(detector.backend.outputs),
            "names": info.names,
        }
    finally:
        detector.close()


WRITEBACK_EVERY = 16 << 20


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux ``sync_file_range(fd, offset, n, SYNC_FILE_RANGE_WRITE)``: start writing a range to disk
    without waiting for it. Not in the os module; None where libc lacks it (then nothing is started
    early and the final fsync does all the work)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return lambda fd, offset, n: fn(fd, offset, n, 2)  # 2 = SYNC_FILE_RANGE_WRITE


_SYNC_FILE_RANGE = _sync_file_range() if hasattr(os, "uname") and os.uname().sysname == "Linux" else None


def start_writeback(fd: int, offset: int, n: int) -> None:
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, n)


class _Hasher:
    """sha256 on a thread of its own, so hashing overlaps the file writes (both release the GIL):
    an upload then goes as fast as the slower of the two, not their sum. A short queue keeps memory flat."""

    def __init__(self, depth: int = 4) -> None:
        import queue
        import threading

        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, name="model-sha256", daemon=True)
        self._thread.start()
        self._result: str | None = None

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._digest.update(data)

    def update(self, data: bytes) -> None:
        self._queue.put(data)

    def hexdigest(self) -> str:
        if self._result is None:
            self._queue.put(None)
            self._thread.join()
            self._result = self._digest.hexdigest()
        return self._result

    def close(self) -> None:
        """Stop the thread without a result (the upload was dropped)."""
        if self._result is None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class Upload:
    """One model arriving in the store: :meth:`write` the bytes (hashed as they come), then
    :meth:`finish` (checks, manifest, commit) or :meth:`abort`. Nothing outside ``.staging`` changes
    until ``finish`` renames the folder into place."""

    def __init__(
        self,
        store: ModelStore,
        version: str,
        sha256: str,
        *,
        size: int | None,
        fmt: str,
        source: str,
        on_end: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.store, self.version, self.sha256, self.size = store, version, sha256, size
        self.fmt, self.source, self.on_end = fmt, source, on_end
        self.received = 0
        self._hash = _Hasher()
        self.dir = store.staging / f"{version}.{uuid.uuid4().hex[:12]}.part"
        self.dir.mkdir(mode=0o700, parents=True)
        self.path = self.dir / ("model" + FORMATS[fmt][1])
        self._file = self.path.open("xb")
        self._flushed = 0
        self._done = False

    def write(self, data: bytes) -> None:
        limit = self.size if self.size is not None else self.store.settings.max_upload_bytes
        if self.received + len(data) > limit:
            self.abort("more bytes than announced")
            what = f"its announced {self.size}" if self.size is not None else "the store's limit of"
            raise UploadTooLarge(
                f"{self.version}: more bytes than {what} {limit} bytes; nothing was stored"
                + ("" if self.size is not None else "; raise [models] max_upload_mb in config.toml")
            )
        try:
            self._file.write(data)
        except OSError as err:
            self.abort(f"write failed: {err.strerror}")
            raise AgentError(
                f"cannot store {self.version}: {err.strerror}; free space on the device "
                "(remove old versions) and push again",
                status=507,
            ) from None
        self._hash.update(data)
        self.received += len(data)
        if self.received - self._flushed >= WRITEBACK_EVERY:
            # Let the disk start on what we have while the rest arrives: the final fsync then only
            # waits for the tail instead of the whole model.
            self._file.flush()
            start_writeback(self._file.fileno(), self._flushed, self.received - self._flushed)
            self._flushed = self.received

    def abort(self, reason: str) -> None:
        """Drop everything staged (safe to call twice)."""
        if self._done:
            return
        self._done = True
        self._hash.close()
        with contextlib.suppress(OSError):
            self._file.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        log.info("upload of %s discarded: %s", self.version, reason)
        if self.on_end:
            self.on_end("refused", reason)

    def finish(self) -> tuple[ModelManifest, bool]:
        """Check, describe and commit; (manifest, created). Raises with a clear line (and discards
        the staged bytes) when the upload is short, damaged, not a model, or a conflicting version."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            fault_point("after_stage_write", self.version)
            got = self._hash.hexdigest()  # waits for the hashing thread to catch up
            if self.size is not None and self.received != self.size:
                raise AgentError(
                    f"{self.version}: upload ended after {self.received} of {self.size} bytes; "
                    "nothing was stored, send it again",
                    status=400,
                )
            if got != self.sha256:
                raise AgentError(
                    f"sha256 mismatch for {self.version}: expected {self.sha256}, got {got}; the upload "
                    "was discarded and the store is unchanged (copy the file again, or check the hash)",
                    status=422,
                )
            described = inspect_model(self.path, self.fmt, version=self.version)
            fault_point("after_verify", self.version)
            manifest = ModelManifest(
                version=self.version,
                file=self.path.name,
                sha256=got,
                size=self.received,
                format=self.fmt,
                created=time.time(),
                source=self.source,
                **described,
            )
            _write_synced(self.dir / MANIFEST, manifest.model_dump_json(indent=2).encode())
            _fsync_dir(self.dir)
            fault_point("after_manifest", self.version)
            created = self.store._commit(self.dir, manifest)
        except BaseException as err:
            self.abort(str(err) if isinstance(err, AgentError) else f"{type(err).__name__}: {err}")
            raise
        self._done = True
        if self.on_end:
            self.on_end("stored", None if created else "already in the store with the same sha256")
        return manifest, created


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


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
        """Every complete version, newest first (a folder without a readable manifest is skipped)."""
        found = []
        for entry in self.root.iterdir() if self.root.is_dir() else []:
            if entry.name.startswith(".") or entry.name in RESERVED or not entry.is_dir():
                continue
            with contextlib.suppress(AgentError):
                found.append(self.manifest(entry.name))
        return sorted(found, key=lambda m: (m.created, m.version), reverse=True)

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

    def begin_upload(
        self,
        version: str,
        sha256: str,
        *,
        size: int | None,
        fmt: str = "onnx",
        source: str,
        on_end: Callable[[str, str | None], None] | None = None,
    ) -> Upload:
        return Upload(self, check_version(version), sha256, size=size, fmt=fmt, source=source, on_end=on_end)

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
            _fsync_dir(self.root)
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
            _fsync_dir(self.root)

    def remove(self, version: str) -> None:
        """Delete a version: renamed out of sight first (atomic), then its files removed."""
        with self._lock:
            src = self.dir(version)
            if not src.exists():
                raise NotFound(f"no model version {version!r} on this device")
            self.staging.mkdir(mode=0o700, exist_ok=True)
            doomed = self.staging / f"{version}.{uuid.uuid4().hex[:8]}.removed"
            os.rename(src, doomed)
            _fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("removed model %s", version)

    def prune(self, protect: set[str | None]) -> list[str]:
        """Remove the oldest versions beyond ``settings.keep``, never one in ``protect``."""
        versions = self.versions()
        excess = len(versions) - self.settings.keep
        removed: list[str] = []
        for manifest in reversed(versions):  # oldest first
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
