"""One model arriving in the store: staged, hashed as it comes, checked, described, committed.

An :class:`Upload` is fed the bytes (by the PUT route, the CLI's ``add`` or pull mode) and writes them
into its own folder under ``models/.staging``; :meth:`Upload.finish` fsyncs them, compares size and
sha256 with what the sender announced, loads the model to check that it is a detector the pipeline
understands, writes the manifest, and has the store rename the folder into place. Any failure discards
the folder: nothing outside ``.staging`` has changed until that rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.core.errors import AgentError, ModelError
from agent.core.faults import fault_point
from agent.store.models import FORMATS, MANIFEST, UploadTooLarge
from fieldtui.protocol import ModelManifest, TensorInfo
from fieldtui.protocol.files import fsync_dir

if TYPE_CHECKING:
    from agent.store.models import ModelStore

log = logging.getLogger("fieldtui.agent.models")


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
    from agent.core.errors import BackendUnavailable
    from agent.inference.detector import Detector

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
            fsync_dir(self.dir)
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
