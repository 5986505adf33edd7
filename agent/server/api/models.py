"""The model store over HTTP: list, upload (streamed), activate, roll back, remove.

``PUT /v1/models/{version}`` is the one route that reads a large body. It refuses before reading a byte
what it can judge from the headers (a bad name 422, no ``Content-Length`` 411, no ``X-Model-Sha256``
400, over the limit 413, the version taken by other bytes 409, the same bytes already there 200), then
streams the body to a staging file in ~1 MB batches written off the event loop, so memory stays flat
whatever the model size. Routes use ``{version:path}`` so that a name with an encoded ``/`` reaches the
name check (422) instead of falling through to "no such route".
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from agent.core.errors import AgentError
from agent.server.api.deps import Service
from agent.server.api.problems import problem
from agent.store.models import check_sha256, check_version, format_for
from agent.store.upload import Upload
from fieldtui.protocol import Job, ModelList, ModelManifest, ModelVersion, Problem

router = APIRouter(prefix="/v1/models", tags=["models"])

BATCH = 1 << 20  # bytes handed to the writer thread at a time
IDLE_TIMEOUT_S = 60.0  # an upload that sends nothing for this long is abandoned

# The schema states the name rule (no '..': every '.' is followed by another character or ends the
# name); check_version enforces it with a message that says which part is wrong.
VERSION_PATTERN = r"^[A-Za-z0-9](\.?[A-Za-z0-9_+-])*\.?$"
Version = Annotated[
    str,
    Path(
        description="version name: 1-64 of A-Z a-z 0-9 . _ - +, starting with a letter or digit, no '..', "
        "not 'current' or 'rollback'",
        json_schema_extra={"pattern": VERSION_PATTERN, "maxLength": 64},
    ),
]


def _version(version: str) -> str:
    """``version`` checked; a sub-route's path caught by ``{version:path}`` (``PUT .../activate``) is a
    405 naming the methods that route has, not a bad version name."""
    if version.endswith("/activate"):
        raise StarletteHTTPException(405, headers={"Allow": "POST"})
    return check_version(version)


Force = Annotated[bool, Query(description="go ahead although the same bytes or version failed before")]


def _manager(service: Service):
    if service.models is None:
        raise AgentError("this agent runs without a model store", status=503)
    return service.models


@router.get("", response_model=ModelList)
def list_models(service: Service, history: Annotated[int, Query(ge=0, le=500)] = 50) -> ModelList:
    """Versions with their manifests, which is current and serving, and the history with reasons."""
    return _manager(service).list(history)


@router.post("/rollback", response_model=Job, status_code=202, responses={409: {"model": Problem}})
def rollback(service: Service) -> Job:
    """A ``model.rollback`` job back to the last good version (the previous one during a probation)."""
    return _manager(service).submit_rollback(reason="rollback requested")


@router.post(
    "/{version:path}/activate",
    response_model=Job,
    status_code=202,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
)
def activate(service: Service, version: Version, force: Force = False) -> Job:
    """A ``model.activate`` job: load, health-check on live frames beside last good, swap, then a
    probation window. A version that failed or was rolled back before is 409 unless ``force``."""
    return _manager(service).submit_activate(check_version(version), force=force)


@router.get("/{version:path}", response_model=ModelVersion, responses={404: {"model": Problem}})
def get_model(service: Service, version: Version) -> ModelVersion:
    return _manager(service).describe(_version(version))


@router.delete("/{version:path}", response_model=ModelList, responses={409: {"model": Problem}})
def remove(service: Service, version: Version) -> ModelList:
    """Remove a version; never the serving one, the current one, or the one a probation may return to."""
    return _manager(service).remove(_version(version))


class _Writer:
    """Hashing and writing on a thread of their own, fed through a short queue: the event loop only
    receives, so the network, the hash and the disk overlap. At most ``DEPTH`` batches wait (memory
    stays flat; a slow disk slows the sender down through TCP)."""

    DEPTH = 4

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.error: BaseException | None = None
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(self.DEPTH)
        self._thread = threading.Thread(target=self._run, name="model-upload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            for data in batch:
                if self.error is None:
                    try:
                        self.upload.write(data)
                    except BaseException as err:  # noqa: BLE001 - handed to the event loop side
                        self.error = err

    async def put(self, batch: list[bytes]) -> None:
        """Queue the chunks as they came (not joined: that would copy every byte once more)."""
        if self.error is not None:
            raise self.error
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, batch)

    async def close(self, abort: str | None = None) -> None:
        """Wait for the queued batches; with ``abort``, discard the upload instead."""
        await asyncio.to_thread(self._queue.put, None)
        await asyncio.to_thread(self._thread.join)
        if abort is not None:
            await asyncio.to_thread(self.upload.abort, abort)
        elif self.error is not None:
            raise self.error


class _IdleWatch:
    """Cancels the current task when :meth:`touch` has not been called for ``seconds`` (one timer for
    the whole upload, not one per chunk)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._handle = self._loop.call_later(seconds, self._check)

    def touch(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        idle = self._loop.time() - self._last
        if idle >= self.seconds:
            self.expired = True
            if self._task is not None:
                self._task.cancel()
        else:
            self._handle = self._loop.call_later(self.seconds - idle, self._check)

    def stop(self) -> None:
        self._handle.cancel()


def _content_length(request: Request) -> int:
    raw = request.headers.get("content-length")
    if raw is None:
        raise AgentError(
            "Content-Length is required: the agent checks the size before reading (no chunked uploads)",
            status=411,
        )
    if not raw.isdecimal():
        raise AgentError(f"Content-Length {raw!r} is not a byte count", status=400)
    return int(raw)


@router.put(
    "/{version:path}",
    response_model=ModelVersion,
    status_code=201,
    responses={
        200: {"model": ModelVersion, "description": "the same bytes were already stored"},
        400: {"model": Problem},
        409: {"model": Problem},
        411: {"model": Problem},
        413: {"model": Problem},
        422: {"model": Problem},
    },
    # read by hand (the body is streamed), so stated here for the schema
    openapi_extra={
        "parameters": [
            {
                "name": "X-Model-Sha256",
                "in": "header",
                "required": True,
                "description": "sha256 of the body, hex",
                "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            },
            {
                "name": "X-Model-Format",
                "in": "header",
                "required": False,
                "description": "onnx (default), engine or hef",
                "schema": {"type": "string", "enum": ["onnx", "engine", "hef"]},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def put_model(
    request: Request, response: Response, service: Service, version: Version, force: Force = False
):
    """Upload a model: the body is the file; ``X-Model-Sha256`` its sha256, ``X-Model-Format`` onnx
    (default), engine or hef. 201 when stored, 200 when the same bytes were there; 409 when these bytes
    failed or were rolled back before under another name, unless ``force``."""
    manager = _manager(service)
    _version(version)
    size = _content_length(request)
    sha256 = check_sha256(request.headers.get("x-model-sha256"))
    fmt = format_for(request.headers.get("x-model-format") or "onnx")
    peer = request.client.host if request.client else "unknown"
    begun = await run_in_threadpool(
        manager.begin_upload, version, sha256, size=size, fmt=fmt, source=f"upload from {peer}", force=force
    )
    if isinstance(begun, ModelManifest):
        response.status_code = 200
        return await run_in_threadpool(manager.describe, version)
    upload = begun
    writer = _Writer(upload)
    received = 0
    idle = _IdleWatch(IDLE_TIMEOUT_S)
    try:
        batch: list[bytes] = []
        pending = 0
        async for chunk in request.stream():
            idle.touch()
            batch.append(chunk)
            pending += len(chunk)
            received += len(chunk)
            if pending >= BATCH:
                await writer.put(batch)
                batch = []
                pending = 0
        if batch:
            await writer.put(batch)
        await writer.close()
    except (ClientDisconnect, asyncio.CancelledError) as err:
        if isinstance(err, asyncio.CancelledError) and not idle.expired:
            await writer.close(abort="the request was cancelled")
            raise
        why = (
            "the client disconnected"
            if isinstance(err, ClientDisconnect)
            else f"no data for {IDLE_TIMEOUT_S:.0f} s"
        )
        await writer.close(abort=f"{why} after {received} of {size} bytes")
        return problem(
            400, f"upload of {version} cut off: {why} after {received} of {size} bytes; nothing was stored"
        )
    except BaseException:
        await writer.close(abort="the upload failed")
        raise
    finally:
        idle.stop()
    manifest, created = await run_in_threadpool(upload.finish)
    response.status_code = 201 if created else 200
    return await run_in_threadpool(manager.stored, manifest)
