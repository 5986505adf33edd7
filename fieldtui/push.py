"""Pushing a model to a device: hash it here, ask the device what it has, stream it, maybe activate.

The sha256 is computed locally first, so the upload carries it in ``X-Model-Sha256`` and the device can
refuse damaged bytes; then a look at ``GET /v1/models`` avoids sending what the device already has (the
same version with the same bytes) or cannot take (the name taken by other bytes, over its size limit),
before a byte of a possibly large file crosses the network. The body is read from the file in 1 MB
chunks off the event loop, so the console's memory stays flat too. Progress goes to a callback, so the
CLI prints a line and the TUI a bar from the same code.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fieldtui.client import AgentClient
from fieldtui.errors import ConsoleError
from fieldtui.jobwatch import finished, watch_job
from fieldtui.protocol import Job, ModelList, ModelVersion, PushResult

CHUNK = 1 << 20
FORMATS = {".onnx": "onnx", ".engine": "engine", ".hef": "hef", ".tflite": "tflite"}
# The agent's rule for version names (agent/store/models.py), checked here too so that a typo is caught
# before a large file is hashed.
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def valid_version(name: str) -> bool:
    return bool(VERSION_RE.fullmatch(name)) and ".." not in name and name not in ("current", "rollback")


@dataclass(frozen=True)
class PushProgress:
    phase: str  # "hashing", "uploading", "verifying", "activating"
    done: int = 0  # bytes (hashing, uploading) or percent (activating)
    total: int = 0
    stage: str = ""


ProgressFn = Callable[[PushProgress], None]


def model_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConsoleError(
            f"{path.name}: a model is a .onnx, .engine (TensorRT), .hef (Hailo) or .tflite (LiteRT) file"
        )
    return fmt


def check_file(path: Path) -> int:
    """The size of a model file that can be pushed; ConsoleError saying what is wrong otherwise."""
    if not path.exists():
        raise ConsoleError(f"model file not found: {path}")
    if not path.is_file():
        raise ConsoleError(f"not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ConsoleError(f"model file is empty: {path}")
    return size


async def hash_file(path: Path, on_progress: ProgressFn | None = None) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while block := await asyncio.to_thread(f.read, CHUNK):
            await asyncio.to_thread(digest.update, block)  # hashlib releases the GIL for big blocks
            done += len(block)
            if on_progress:
                on_progress(PushProgress("hashing", done, size))
    return digest.hexdigest()


async def file_chunks(path: Path, size: int, on_progress: ProgressFn | None = None) -> AsyncIterator[bytes]:
    """The file's bytes in chunks, read in a thread; stops at ``size`` (what Content-Length promised)."""
    sent = 0
    with path.open("rb") as f:
        while sent < size:
            block = await asyncio.to_thread(f.read, min(CHUNK, size - sent))
            if not block:
                raise ConsoleError(f"{path.name} shrank while it was being sent; push it again")
            sent += len(block)
            yield block
            if on_progress:
                on_progress(PushProgress("uploading", sent, size))
    if on_progress:  # all sent: the device now checks the hash and loads the model before answering
        on_progress(PushProgress("verifying", size, size))


async def follow_job(
    client: AgentClient,
    job: Job,
    *,
    timeout: float,
    on_progress: ProgressFn | None = None,
    phase: str = "activating",
) -> Job:
    """Follow a job to its end (fieldtui.jobwatch: the agent's SSE job events, polling only without a
    stream), reporting each new stage as ``phase`` progress; AgentTimeout if it runs past ``timeout``."""

    def update(j: Job) -> None:
        if on_progress is not None and not finished(j):
            on_progress(PushProgress(phase, int(j.progress * 100), 100, j.stage))

    return await watch_job(client, job, on_update=update, timeout=timeout)


async def plan_push(
    path: Path,
    version: str,
    models: Callable[[], Awaitable[ModelList]],
    on_progress: ProgressFn | None = None,
) -> tuple[int, str, str, ModelVersion | None]:
    """The checks before a byte is sent, whichever link sends it: the version name, the file, its sha256
    (hashed here), the device's size limit and what it already holds (from ``models()``). Returns
    (size, format, sha256, the stored version with the same bytes or None); ConsoleError otherwise."""
    if not valid_version(version):
        raise ConsoleError(
            f"version name {version!r} is not allowed: use 1-64 letters, digits, '.', '_', '-' or '+', "
            "starting with a letter or digit (like v7 or 2024.06.1)"
        )
    size = check_file(path)
    fmt = model_format(path)
    sha256 = await hash_file(path, on_progress)
    listing = await models()
    if size > listing.max_upload_bytes:
        raise ConsoleError(
            f"{path.name} is {size / 1e6:.0f} MB, over the device's limit of "
            f"{listing.max_upload_bytes / 1e6:.0f} MB ([models] max_upload_mb in its config.toml); nothing was sent"
        )
    existing = next((v for v in listing.versions if v.version == version), None)
    if existing is not None and existing.manifest.sha256 != sha256:
        raise ConsoleError(
            f"version {version} is already on the device with other bytes (sha256 "
            f"{existing.manifest.sha256[:12]}…, this file {sha256[:12]}…); push it under a new version name"
        )
    return size, fmt, sha256, existing


async def push_model(
    client: AgentClient,
    path: Path,
    version: str,
    *,
    activate: bool = False,
    on_progress: ProgressFn | None = None,
    job_timeout: float = 120.0,
    force: bool = False,
) -> PushResult:
    """Upload ``path`` as ``version`` (skipped when the device has the same bytes), then activate it if
    asked. A failed activation is not an exception here: the result's ``activation`` job says why."""
    size, fmt, sha256, existing = await plan_push(path, version, client.models, on_progress)
    if existing is not None:
        stored, uploaded = existing, False
    else:
        body = file_chunks(path, size, on_progress)
        if on_progress:
            on_progress(PushProgress("uploading", 0, size))
        stored = await client.upload_model(version, body, size=size, sha256=sha256, fmt=fmt, force=force)
        uploaded = True
    job = None
    if activate:
        job = await follow_job(
            client,
            await client.activate_model(version, force=force),
            timeout=job_timeout,
            on_progress=on_progress,
        )
    return PushResult(version=stored, uploaded=uploaded, activation=job)
