"""The multi-camera benchmark: N synthetic cameras sharing one copy of the model, batching on and off.

Each camera is a ``demo:`` scene of its own (agent/frames/sources/demo.py) offering ``camera_fps``, run
through the very :class:`~agent.frames.multicam.MultiPipeline` the agent runs its cameras with, so the
figures are the agent's own: total processed FPS, and each camera's frame latency (from the moment its
frame was captured to its detections, queueing and batching waits included) at p50 and p95. The two
rows differ only in the batch limit: up to what the model takes (a dynamic batch, or the fixed batch
of an engine built for N), and 1 (cameras take turns). A model that takes one frame per call has no
"batching on" row to measure: that row is skipped and says why.

The synthetic cameras render on the same cores as the model, as real decoding would.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.bench.probe import CpuClock, system_use
from agent.core.cameras import CameraSpec
from fieldtui.protocol import BenchmarkConfig, BenchmarkResult, CameraBench, LatencyStats

__all__ = ["run_camera_benchmark"]

WARMUP_S = 1.0  # cameras open, the first frames pass, before the window starts (at most the window)
CAMERA_SIZE = "640x480"


def _latency(seconds: list[float]) -> LatencyStats | None:
    if not seconds:
        return None
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95 = np.percentile(ms, [50, 95])
    return LatencyStats(
        p50_ms=round(float(p50), 2), p95_ms=round(float(p95), 2), max_ms=round(float(ms.max()), 2)
    )


def run_camera_benchmark(
    model: Path,
    *,
    cameras: int,
    camera_fps: float,
    duration_s: float,
    threads: int | None = None,
    backend: str = "onnxruntime",
    check: Callable[[], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[BenchmarkResult]:
    """Two rows, batching on then off, each measured for ``duration_s`` after a short warm-up."""
    from agent.frames.multicam import MAX_BATCH, probe_batch
    from agent.inference.detector import Detector

    specs = [
        CameraSpec(f"cam{i}", f"demo:?fps={camera_fps:g}&size={CAMERA_SIZE}&seed={i}")
        for i in range(1, cameras + 1)
    ]
    rows: list[BenchmarkResult] = []
    with Detector.load(model, backend=backend, threads=threads) as det:
        limit = probe_batch(det, MAX_BATCH)
        for n, batching in enumerate((True, False)):
            config = BenchmarkConfig(
                mode="cameras",
                backend=backend,
                threads=threads,
                batch=min(limit, cameras) if batching else 1,
                cameras=cameras,
            )
            if batching and limit == 1:
                rows.append(
                    BenchmarkResult(
                        config=config,
                        status="skipped",
                        reason="the model takes one frame per call, so cameras take turns (the row below); "
                        "export it with a dynamic batch (or a fixed batch of N) to batch cameras",
                        model_sha256=det.sha256,
                    )
                )
                continue
            if progress is not None:
                progress(n / 2, f"{cameras} cameras, batching {'on' if batching else 'off'}")
            rows.append(
                _measure(
                    det, specs, config, max_batch=limit if batching else 1, duration_s=duration_s, check=check
                )
            )
    return rows


def _measure(
    det: Any,
    specs: list[CameraSpec],
    config: BenchmarkConfig,
    *,
    max_batch: int,
    duration_s: float,
    check: Callable[[], None] | None,
) -> BenchmarkResult:
    from agent.frames.multicam import MultiPipeline

    mp = MultiPipeline(det, specs, max_batch=max_batch)
    seen: dict[str, list[float]] = {s.name: [] for s in specs}
    recording = threading.Event()

    def probe(camera: str, seconds: float) -> None:  # the postprocess thread: one list append
        if recording.is_set():
            seen[camera].append(seconds)

    mp.latency_probe = probe
    mp.start()
    try:
        _wait(min(WARMUP_S, duration_s), check)
        first = {s.name: mp.sample(s.name) for s in specs}
        clock = CpuClock().start()
        recording.set()
        t0 = time.monotonic()
        _wait(duration_s, check)
        recording.clear()
        elapsed = time.monotonic() - t0
        last = {s.name: mp.sample(s.name) for s in specs}
        system = system_use(clock)
    finally:
        mp.stop()
    per_camera = []
    frames = dropped = 0
    for s in specs:
        done = last[s.name].frames_total - first[s.name].frames_total
        lost = last[s.name].dropped_total - first[s.name].dropped_total
        frames, dropped = frames + done, dropped + lost
        per_camera.append(
            CameraBench(
                name=s.name,
                fps=round(done / elapsed, 2),
                latency=_latency(seen[s.name]),
                drop_rate=round(lost / (done + lost), 4) if done + lost else 0.0,
            )
        )
    everything = [x for values in seen.values() for x in values]
    if not frames:
        return BenchmarkResult(
            config=config, status="failed", reason="no frame was processed: check the model loads and runs"
        )
    latency = _latency(everything)
    return BenchmarkResult(
        config=config,
        status="ok",
        iterations=frames,
        latency=latency,
        per_frame_ms=round(statistics.median(everything) * 1000.0, 3) if everything else None,
        fps=round(frames / elapsed, 2),
        system=system,
        drop_rate=round(dropped / (frames + dropped), 4) if frames + dropped else 0.0,
        model_sha256=det.sha256,
        per_camera=per_camera,
    )


def _wait(seconds: float, check: Callable[[], None] | None) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if check is not None:
            check()
        time.sleep(min(0.25, left))
