"""Benchmarks as agent jobs: ``POST /v1/benchmarks`` submits one, the history is read from state.db.

A benchmark is a read-only job (it changes neither model nor pipeline), but two at once would measure
each other, so a second one is refused with 409 while one runs. Model mode loads its own copy of the
running model from the store; pipeline mode watches the live pipeline without stopping it.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

from agent.bench.frames import live_frames, scene_frames
from agent.bench.history import BenchmarkHistory
from agent.bench.runner import check_request, run_model_benchmarks, run_pipeline_benchmark
from agent.core.errors import Conflict
from agent.core.jobs import JobContext
from fieldtui.protocol import BenchmarkList, BenchmarkRequest, BenchmarkRun, Job

JOB_KIND = "benchmark"
TIMING_FRAMES = 16  # distinct frames the timed calls cycle through


class Benchmarks:
    """The agent's benchmark service; ``service`` is the :class:`~agent.server.service.AgentService`."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.history = BenchmarkHistory(service.db)
        self._submitting = threading.Lock()
        self._job_id: str | None = None  # the last benchmark job; its state says whether one runs

    def submit(self, request: BenchmarkRequest) -> Job:
        check_request(request)
        # The job's own state decides, not a flag the job clears: a job cancelled before its function
        # ever ran would leave a flag set for good.
        with self._submitting:
            if self._job_id is not None:
                current = self.service.jobs.get(self._job_id)
                if current.state in ("queued", "running"):
                    raise Conflict(
                        f"a benchmark is already running (job {current.id}); wait for it to finish "
                        "(GET /v1/jobs/{id}) or cancel it, then run this one: two at once would measure "
                        "each other"
                    )
            job = self.service.jobs.submit(
                JOB_KIND, self._job, request.model_dump(mode="json"), mutating=False
            )
            self._job_id = job.id
        return job

    def _job(self, ctx: JobContext) -> BenchmarkRun:
        return self.run(BenchmarkRequest.model_validate(ctx.params), ctx)

    def run(self, request: BenchmarkRequest, ctx: JobContext | None = None) -> BenchmarkRun:
        pipeline = self.service.pipeline
        detector = pipeline.detector
        info = detector.info
        check = ctx.check_cancelled if ctx else None
        progress = ctx.progress if ctx else None
        if request.mode == "pipeline":
            results = [run_pipeline_benchmark(pipeline, request.duration_s, check=check, progress=progress)]
        elif request.mode == "cameras":
            from agent.bench.cameras import run_camera_benchmark

            results = run_camera_benchmark(
                Path(detector.path),
                cameras=request.cameras,
                camera_fps=request.camera_fps,
                duration_s=request.duration_s,
                threads=request.threads[0],
                backend=info.backend,
                check=check,
                progress=progress,
            )
        else:
            if progress:
                progress(0.0, "capturing frames from the live source")
            want = max(TIMING_FRAMES, request.accuracy_frames)
            frames = live_frames(pipeline, want, timeout=3.0) or scene_frames(want)
            results = run_model_benchmarks(
                Path(detector.path),
                request,
                frames,
                check=check,
                progress=progress,
                engines=self.service.engines.store,  # INT8 etc. from engines built from this model
            )
        run = BenchmarkRun(
            id=uuid.uuid4().hex,
            created=time.time(),
            device_id=self.service.device_id,
            model_sha256=detector.sha256,
            model=info.version or Path(info.path).name,
            job_id=ctx.job_id if ctx else None,
            results=results,
        )
        return self.history.save(run)

    def list(self, limit: int = 20) -> BenchmarkList:
        return BenchmarkList(runs=self.history.list(limit))

    def get(self, run_id: str) -> BenchmarkRun:
        return self.history.get(run_id)
