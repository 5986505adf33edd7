"""The :class:`~fieldtui.link.base.DeviceLink` over the agent's HTTP API (:class:`AgentClient`).

Long jobs (a benchmark, an engine rebuild and the activation it starts) are followed with
:func:`fieldtui.jobwatch.watch_job`, as the screens follow them: from the SSE stream, polling only when
there is none. Cancelling the operation cancels the job on the device.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fieldtui.client import AgentClient
from fieldtui.config import SavedDevice
from fieldtui.errors import ConsoleError, UnknownDevice
from fieldtui.jobwatch import finished, watch_job
from fieldtui.link.base import BenchProgressFn, DeviceLink
from fieldtui.protocol import (
    Ack,
    BackendInfo,
    BenchmarkRequest,
    BenchmarkRun,
    CameraChange,
    CameraList,
    CameraStatus,
    DeviceStatus,
    EngineList,
    EngineRebuildRequest,
    EngineRebuildResult,
    Job,
    LogPage,
    ModelList,
    PushResult,
)
from fieldtui.protocol.cameras import camera_refusal
from fieldtui.push import ProgressFn, follow_job, push_model

BENCH_POLL_S = 0.3  # how often a job is read when the agent gives no event stream


class HttpLink(DeviceLink):
    def __init__(self, entry: SavedDevice, timeout: float = 10.0, job_timeout: float = 120.0) -> None:
        self.kind = "https" if entry.device.tls else "http"
        self.entry = entry
        self.job_timeout = job_timeout
        self.client = AgentClient.for_device(entry.device, entry.token, timeout=timeout)

    def _need_token(self) -> None:
        if not self.entry.token:
            host = self.entry.device.host
            raise UnknownDevice(
                f"{self.entry.device.api_url} answers, but no token is saved for it: pair it with "
                f"`fieldtui pair {host}` (over SSH) or `fieldtui add {host} --token T`"
            )

    async def status(self) -> DeviceStatus:
        health = await self.client.health()  # public: "down" is told apart from "not paired" first
        self._need_token()
        device, status = await asyncio.gather(self.client.device(), self.client.status())
        return DeviceStatus(device=device, health=health, status=status)

    async def logs(self, lines: int = 100) -> LogPage:
        self._need_token()
        return await self.client.logs(limit=lines)

    async def restart(self) -> Ack:
        self._need_token()
        job = await self.client.wait_job((await self.client.pipeline_restart()).id, timeout=self.job_timeout)
        if job.state != "succeeded":
            raise ConsoleError(f"pipeline restart {job.state}: {job.error or 'see `fieldtui logs`'}")
        return Ack(message="the agent restarted its pipeline")

    async def push(
        self,
        path: Path,
        version: str,
        *,
        activate: bool = False,
        on_progress: ProgressFn | None = None,
        force: bool = False,
    ) -> PushResult:
        self._need_token()
        return await push_model(
            self.client,
            path,
            version,
            activate=activate,
            on_progress=on_progress,
            job_timeout=self.job_timeout,
            force=force,
        )

    async def activate(self, version: str, *, force: bool = False) -> Job:
        self._need_token()
        job = await self.client.activate_model(version, force=force)
        return await follow_job(self.client, job, timeout=self.job_timeout)

    async def rollback(self) -> Job:
        self._need_token()
        return await follow_job(self.client, await self.client.rollback_model(), timeout=self.job_timeout)

    async def models(self) -> ModelList:
        self._need_token()
        return await self.client.models()

    async def remove(self, version: str) -> ModelList:
        self._need_token()
        return await self.client.remove_model(version)

    async def doctor(self) -> list[BackendInfo]:
        self._need_token()
        return (await self.client.device()).backends

    async def bench(
        self, request: BenchmarkRequest, *, on_progress: BenchProgressFn | None = None
    ) -> BenchmarkRun:
        """Submit a ``POST /v1/benchmarks`` job and follow it; the job is cancelled if this is."""
        self._need_token()
        job = await self._follow(await self.client.start_benchmark(request), on_progress)
        if job.state != "succeeded" or job.result is None:
            raise ConsoleError(f"benchmark {job.state}: {job.error or 'no result'}")
        return BenchmarkRun.model_validate(job.result)

    async def engines(self) -> EngineList:
        self._need_token()
        return await self.client.engines()

    async def cameras(self) -> CameraList:
        self._need_token()
        return await self.client.cameras()

    async def change_camera(self, name: str, change: CameraChange, *, add: bool) -> CameraStatus:
        self._need_token()
        refusal = camera_refusal(await self.client.cameras(), name, add=add)
        if refusal:
            raise ConsoleError(refusal)
        return await self.client.put_camera(name, change)

    async def remove_camera(self, name: str) -> CameraList:
        self._need_token()
        await self.client.remove_camera(name)
        return await self.client.cameras()

    async def rebuild(
        self, request: EngineRebuildRequest, *, on_progress: BenchProgressFn | None = None
    ) -> EngineRebuildResult:
        """Submit ``POST /v1/engines/rebuild`` and follow it (and the activation it starts); the job is
        cancelled if this is."""
        self._need_token()
        job = await self._follow(await self.client.rebuild_engine(request), on_progress)
        if job.state != "succeeded" or job.result is None:
            raise ConsoleError(f"engine rebuild {job.state}: {job.error or 'no result'}")
        result = EngineRebuildResult.model_validate(job.result)
        if result.activation_job:
            activation = await self._follow(await self.client.job(result.activation_job), on_progress)
            if activation.state != "succeeded":
                raise ConsoleError(
                    f"{result.model_version} was built and stored but not activated: {activation.error}"
                )
        return result

    async def _follow(self, job: Job, on_progress: BenchProgressFn | None) -> Job:
        """Follow ``job`` until it ends, reporting progress while it runs; cancel it if this is cancelled."""

        def moved(now: Job) -> None:
            if on_progress and not finished(now):
                on_progress(now.progress, now.stage or now.state)

        try:
            # No deadline: a benchmark or a build takes as long as the device needs; Ctrl-C cancels it.
            return await watch_job(self.client, job, on_update=moved, timeout=None, poll_s=BENCH_POLL_S)
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self.client.cancel_job(job.id)
            raise

    async def aclose(self) -> None:
        await self.client.aclose()
