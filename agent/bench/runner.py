"""On-device benchmarks: how fast this device runs a model in each configuration, and how well it agrees.

For each (backend, precision, threads, batch): load the model, warm up, then time N calls of the
per-frame template (preprocess every frame of the batch, one ``infer``, postprocess every frame).
Latency is per call; per-frame latency and FPS divide by the batch, so batch sizes show the latency
against throughput trade-off side by side. A configuration that cannot run here (a precision with no
engine yet, a batch the model's input does not accept) is a skipped result with the reason, never a
made-up figure. Pipeline mode watches the live pipeline instead, without stopping it.

No HTTP here: the API job (agent/bench/jobs.py) and ``fieldtui-agent bench`` call the same functions.

Other backends and precisions plug in through the backend registry: a backend class may define
``model_for_precision(path, precision) -> (model_path | None, reason | None)`` (for instance the
TensorRT engine built for INT8); without it a backend serves only FP32 from its own model format.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.bench.probe import CpuClock, system_use
from agent.core.errors import AgentError, BackendUnavailable
from agent.inference.agreement import agreement
from agent.inference.backends import get_backend, known_keys
from fieldtui.protocol import (
    BenchmarkConfig,
    BenchmarkRequest,
    BenchmarkResult,
    BenchRound,
    LatencyStats,
    StageTimes,
)

Progress = Callable[[float, str], None]
Cancelled = Callable[[], None]  # raises to stop (JobContext.check_cancelled)

NO_ENGINE_YET = "not available for this backend/model yet"
# timed calls are split into rounds: their spread is the run's noise (fieldtui/protocol/benchnoise.py)
ROUNDS = 8
CALLS_PER_ROUND = 5  # at least; fewer iterations make fewer rounds
REBUILD_HINT = "fieldtui-agent engines rebuild --precision int8"


def knobs(backend: str) -> frozenset[str]:
    """The settings ``backend`` has (see :attr:`agent.inference.backends.base.Backend.knobs`)."""
    from agent.inference.backends import BACKENDS

    cls = BACKENDS.get(backend)
    return cls.knobs if cls is not None else frozenset({"batch"})


def configurations(request: BenchmarkRequest) -> list[BenchmarkConfig]:
    """Every combination the request asks for, in a stable order. Only the knobs a backend has are
    varied: TensorRT runs each (precision, batch) once, its threads "n/a", not once per thread count."""
    configs = []
    for b in dict.fromkeys(request.backends):
        has_threads = "threads" in knobs(b)
        threads = dict.fromkeys(request.threads) if has_threads else [None]
        configs += [
            BenchmarkConfig(
                mode="model", backend=b, precision=p, threads=t, threads_apply=has_threads, batch=n
            )
            for p in dict.fromkeys(request.precisions)
            for t in threads
            for n in dict.fromkeys(request.batch_sizes)
        ]
    return configs


def is_reference(config: BenchmarkConfig, path: Path, model: Path) -> bool:
    """The reference row is the reference itself: the FP32 source model on ONNX Runtime with the
    runtime's own thread count, batch 1 (what :class:`_Reference` loads). Every other row, including
    an FP32 engine of another backend, gets its agreement measured."""
    return (
        config.backend == "onnxruntime"
        and config.precision == "fp32"
        and config.threads is None
        and config.batch == 1
        and Path(path) == Path(model)
    )


def check_request(request: BenchmarkRequest) -> None:
    """Refuse (422) backends this agent does not know; known but unavailable ones are skipped instead."""
    unknown = [b for b in request.backends if b not in known_keys()]
    if unknown:
        raise AgentError(
            f"backends: unknown backend {unknown[0]!r}; choose from {', '.join(known_keys())}", status=422
        )


def model_for_precision(
    backend_cls: Any, path: Path, precision: str, engines: Any = None, sha256: str | None = None
) -> tuple[Path | None, str | None]:
    """The model file this backend runs at ``precision``, or (None, why not). ``engines`` (an
    :class:`~agent.engines.store.EngineStore`) is looked in first for an engine built from ``path`` (whose
    ``sha256`` the caller may know already)."""
    if engines is not None and (precision != "fp32" or path.suffix.lstrip(".") != backend_cls.model_format):
        from agent.engines.store import find_engine

        found, why = find_engine(engines, path, backend_cls.key, precision, sha256)
        if found is not None or why is not None:
            return found, why
    hook = getattr(backend_cls, "model_for_precision", None)
    if hook is not None:
        return hook(path, precision)
    if precision == "fp32" and path.suffix.lstrip(".") == backend_cls.model_format:
        return path, None
    if backend_cls.key == "onnxruntime" and precision == "int8":
        return None, f"int8 on onnxruntime: {NO_ENGINE_YET}: build one with `{REBUILD_HINT}`"
    return None, f"{precision} on {backend_cls.key}: {NO_ENGINE_YET}"


def batch_skip_reason(detector: Any, batch: int) -> str | None:
    """None when the model's input accepts ``batch`` frames; else why not and what to do."""
    dim = detector.backend.inputs[0].shape[0]
    if batch == 1 or not isinstance(dim, int) or dim <= 0 or dim == batch:
        return None
    return (
        f"the model's input batch dimension is fixed at {dim}, so batch {batch} cannot run; "
        "re-export it with a dynamic batch (e.g. `yolo export format=onnx dynamic=True`) to measure it"
    )


def _ms(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) * 1000.0


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    ms = _ms(seconds)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(
        p50_ms=round(float(p50), 3),
        p90_ms=round(float(p90), 3),
        p99_ms=round(float(p99), 3),
        mean_ms=round(float(ms.mean()), 3),
        max_ms=round(float(ms.max()), 3),
    )


def rounds_of(totals: Sequence[float], batch: int) -> list[BenchRound]:
    """The timed calls in consecutive rounds (:data:`ROUNDS` at most, :data:`CALLS_PER_ROUND` each at
    least): each round's p50, fastest call and FPS."""
    n = max(1, min(ROUNDS, len(totals) // CALLS_PER_ROUND))
    out = []
    for part in np.array_split(np.asarray(totals, dtype=np.float64), n):
        if part.size:
            total = float(part.sum())
            out.append(
                BenchRound(
                    p50_ms=round(float(np.median(part)) * 1000.0, 3),
                    min_ms=round(float(part.min()) * 1000.0, 3),
                    fps=round(batch * part.size / total, 2) if total > 0 else None,
                )
            )
    return out


def _run_batch(detector: Any, frames: Sequence[np.ndarray]) -> tuple[float, float, float, list[Any]]:
    """One call of the template over a batch: (preprocess, infer, postprocess) seconds and detections."""
    t0 = time.perf_counter()
    prepared = [detector.preprocess(f) for f in frames]
    tensor = prepared[0][0] if len(prepared) == 1 else np.concatenate([p[0] for p in prepared])
    t1 = time.perf_counter()
    outputs = detector.infer(tensor)
    t2 = time.perf_counter()
    n = len(frames)
    dets = []
    for i, (_, lb) in enumerate(prepared):
        # a batched output has one row per frame; a model that answers [1, ...] whatever the batch
        # (as the generated test models do) still gets each frame postprocessed
        mine = [o[i : i + 1] if o.shape[0] == n and n > 1 else o for o in outputs]
        dets.append(detector.postprocess(mine, lb))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, dets


def measure(
    detector: Any,
    frames: Sequence[np.ndarray],
    *,
    batch: int,
    iterations: int,
    warmup: int,
    check: Cancelled | None = None,
    progress: Callable[[float], None] | None = None,
) -> BenchmarkResult:
    """Warm up, then time ``iterations`` calls; the result without config, agreement or comparison."""
    if not frames:
        raise AgentError("no frames to benchmark on: give a folder of images or start the live source")
    batches = [[frames[(i * batch + k) % len(frames)] for k in range(batch)] for i in range(len(frames))]
    for i in range(warmup):
        _run_batch(detector, batches[i % len(batches)])
    pre, inf, post, total = [], [], [], []
    clock = CpuClock().start()
    for i in range(iterations):
        if check is not None and i % 8 == 0:
            check()
        a, b, c, _ = _run_batch(detector, batches[i % len(batches)])
        pre.append(a)
        inf.append(b)
        post.append(c)
        total.append(a + b + c)
        if progress is not None and i % 8 == 0:
            progress(i / iterations)
    system = system_use(clock)
    lat = latency_stats(total)
    mean_s = statistics.fmean(total)
    return BenchmarkResult(
        config=BenchmarkConfig(backend=type(detector.backend).key, batch=batch),
        status="ok",
        iterations=iterations,
        latency=lat,
        per_frame_ms=round(lat.p50_ms / batch, 3),
        fps=round(batch / mean_s, 2) if mean_s > 0 else None,
        stages_ms=StageTimes(
            preprocess=round(float(_ms(pre).mean()), 3),
            infer=round(float(_ms(inf).mean()), 3),
            postprocess=round(float(_ms(post).mean()), 3),
        ),
        system=system,
        rounds=rounds_of(total, batch),
    )


def run_model_benchmarks(
    model: Path,
    request: BenchmarkRequest,
    frames: Sequence[np.ndarray],
    *,
    check: Cancelled | None = None,
    progress: Progress | None = None,
    engines: Any = None,
) -> list[BenchmarkResult]:
    """Every configuration of ``request`` on ``model`` (the FP32 source model of the store); reduced
    precisions run the engines built from it in ``engines`` (an EngineStore) when there are some."""
    from agent.inference.detector import file_sha256

    configs = configurations(request)
    sha256 = file_sha256(model) if engines is not None else None  # once, not per configuration
    held_out = list(frames[: request.accuracy_frames])
    reference = _Reference(model)
    results = []
    try:
        for n, config in enumerate(configs):
            if check is not None:
                check()
            label = (
                f"{config.backend} {config.precision} threads={config.threads_label()} batch={config.batch}"
            )
            step = (lambda f, n=n, label=label: progress((n + f) / len(configs), label)) if progress else None
            if step:
                step(0.0)
            results.append(
                _one(model, config, request, frames, held_out, check, step, reference, engines, sha256)
            )
    finally:
        reference.close()
    return results


class _Reference:
    """The FP32 model on ONNX Runtime, loaded the first time a reduced precision needs comparing."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self._detector: Any = None

    def get(self) -> Any:
        if self._detector is None:
            from agent.inference.detector import Detector

            self._detector = Detector.load(self.model, backend="onnxruntime")
        return self._detector

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()


def _one(
    model: Path,
    config: BenchmarkConfig,
    request: BenchmarkRequest,
    frames: Sequence[np.ndarray],
    held_out: list[np.ndarray],
    check: Cancelled | None,
    step: Callable[[float], None] | None,
    reference: _Reference,
    engines: Any = None,
    sha256: str | None = None,
) -> BenchmarkResult:
    from agent.inference.detector import Detector

    def skipped(reason: str, status: str = "skipped") -> BenchmarkResult:
        return BenchmarkResult(config=config, status=status, reason=reason)  # type: ignore[arg-type]

    try:
        backend_cls = get_backend(config.backend)
        ok, why = backend_cls.available()
        if not ok:
            return skipped(why)
        path, why_not = model_for_precision(backend_cls, model, config.precision, engines, sha256)
        if path is None:
            return skipped(why_not or NO_ENGINE_YET)
        identity = _identity(path, model, sha256, engines)
        with Detector.load(path, backend=config.backend, threads=config.threads) as detector:
            reason = batch_skip_reason(detector, config.batch)
            if reason is not None:
                return skipped(reason)
            result = measure(
                detector,
                frames,
                batch=config.batch,
                iterations=request.iterations,
                warmup=request.warmup,
                check=check,
                progress=step,
            )
            identity["model_sha256"] = detector.sha256
            if is_reference(config, path, model):
                identity.update(reference=True, agreement_f1=None, agreement_frames=0)
            elif held_out:
                f1 = round(agreement(reference.get(), detector, held_out), 4)
                identity.update(agreement_f1=f1, agreement_frames=len(held_out))
    except BackendUnavailable as err:
        return skipped(str(err))
    except AgentError as err:
        return skipped(str(err), "failed")
    return result.model_copy(update={"config": config, **identity})


def _identity(path: Path, model: Path, sha256: str | None, engines: Any) -> dict[str, Any]:
    """What traces a row to what ran: the engine store key when ``path`` is an engine of the store."""
    key = None
    if engines is not None and Path(path) != Path(model):
        try:
            Path(path).resolve().relative_to(Path(engines.root).resolve())
            key = Path(path).parent.name
        except (ValueError, AttributeError):
            key = None
    return {"engine_key": key}


_WINDOW_STEP = 4  # samples 0.5 s apart, each over the pipeline's last 2 s (agent/frames/stats.py)


def run_pipeline_benchmark(
    pipeline: Any, duration_s: float, *, check: Cancelled | None = None, progress: Progress | None = None
) -> BenchmarkResult:
    """End to end on the live source for ``duration_s``, from the running pipeline's own figures."""
    from agent.inference.backends import BACKENDS
    from agent.inference.precision import model_precision

    detector = pipeline.detector
    info = getattr(detector, "info", None)
    backend = info.backend if info else "onnxruntime"
    cls = BACKENDS.get(backend)
    has_threads = cls is not None and "threads" in cls.knobs
    threads = getattr(detector.backend, "threads", None) if has_threads else None
    config = BenchmarkConfig(
        mode="pipeline",
        backend=backend,
        # from the engine's fingerprint or the graph: INT8 QDQ and TensorRT FP16 take float32 input too
        precision=model_precision(Path(info.path), info.input_dtype) if info else "fp32",
        threads=threads,
        threads_apply=has_threads,
    )
    engine_key = (
        Path(info.path).parent.name
        if info and (Path(info.path).parent / "fingerprint.json").exists()
        else None
    )
    identity = {"model_sha256": info.sha256 if info else None, "engine_key": engine_key}
    if pipeline.state not in ("running", "starting"):
        return BenchmarkResult(
            config=config,
            status="failed",
            reason=f"the pipeline is {pipeline.state}: start it (POST /v1/pipeline/start) and run again",
            **identity,
        )
    first = pipeline.sample()
    clock = CpuClock().start()
    samples = []
    deadline = time.monotonic() + duration_s
    while (left := deadline - time.monotonic()) > 0:
        if check is not None:
            check()
        time.sleep(min(0.5, left))
        samples.append(pipeline.sample())
        if progress is not None:
            progress(1 - max(0.0, deadline - time.monotonic()) / duration_s, "watching the live pipeline")
    last = samples[-1] if samples else pipeline.sample()
    system = system_use(clock)
    frames = last.frames_total - first.frames_total
    dropped = last.dropped_total - first.dropped_total
    live = [s for s in samples if s.fps > 0] or [last]
    p50 = statistics.median(s.latency_p50_ms for s in live)
    return BenchmarkResult(
        config=config,
        status="ok" if frames > 0 else "failed",
        reason=None if frames > 0 else "no frames were processed while watching: check the source",
        iterations=frames,
        latency=LatencyStats(p50_ms=round(p50, 3), p95_ms=round(max(s.latency_p95_ms for s in live), 3)),
        per_frame_ms=round(p50, 3),
        fps=round(frames / duration_s, 2),
        stages_ms=StageTimes(
            **{
                k: round(statistics.fmean(getattr(s.stages_ms, k) for s in live), 3)
                for k in StageTimes.model_fields
            }
        ),
        system=system,
        drop_rate=round(dropped / (frames + dropped), 4) if frames + dropped else 0.0,
        # windows that do not overlap (a sample every 0.5 s covers the last WINDOW_S): the run's rounds
        rounds=[BenchRound(p50_ms=round(s.latency_p50_ms, 3), fps=s.fps) for s in live[::_WINDOW_STEP]],
        **identity,
    )
