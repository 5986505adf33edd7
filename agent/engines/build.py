"""Build one engine from an FP32 ONNX model, measure it against FP32, and store it. No HTTP, no jobs.

``fieldtui-agent engines rebuild`` and the ``engine_rebuild`` job (agent/engines/jobs.py) both call
:func:`rebuild`. What it does, whatever the backend:

1. check that this device can build the engine (:func:`check_buildable`: a 422 with the reason and
   what to do otherwise; Hailo's says HEFs are compiled off-device);
2. preprocess the calibration frames exactly as the pipeline does (``Detector.preprocess`` of the FP32
   model), then prepare the ONNX the engine is built from (agent/engines/quantize.py: fixed shapes, INT8 QDQ);
3. ONNX Runtime: save the graph-optimised model; other runtimes: their backend's ``build_engine``
   (TensorRT builds INT8 from the QDQ model);
4. load the new engine beside the FP32 model and measure both on held-out frames: inference p50 of each,
   timed alternately so a busy CPU slows both alike, and detection agreement (F1 at IoU 0.5);
5. commit it to the engine store (agent/engines/store.py): staging folder renamed into place, so a failure or
   a cancel anywhere before leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import AgentError, BackendUnavailable
from agent.engines.store import EngineStore, engine_key, identity
from agent.inference.agreement import agreement
from agent.inference.backends import known_keys
from fieldtui.protocol import EngineFingerprint, EngineRebuildResult, RuntimeIdentity

log = logging.getLogger("fieldtui.agent.engines")

TIMED_RUNS = 30  # inference calls timed per model for the p50s
WARMUP_RUNS = 3


class CannotBuild(AgentError):
    """A rebuild this device cannot do (a request to fix, not a failure of the device)."""

    status = 422


@dataclass
class BuildSource:
    """The FP32 ONNX model an engine is built from."""

    path: Path
    sha256: str
    version: str | None = None  # model store version; None: the configured or demo model


@dataclass
class BuildOptions:
    backend: str = "onnxruntime"
    precision: str = "int8"
    workspace_mb: int | None = None
    version_compatible: bool = False  # TensorRT: BuilderFlag.VERSION_COMPATIBLE
    calibration: Sequence[np.ndarray] = ()  # BGR frames
    held_out: Sequence[np.ndarray] = ()  # BGR frames, for the p50s and the agreement
    notes: list[str] = field(default_factory=list)  # said before the build's own stages (frames used)


def check_buildable(backend: str, precision: str) -> RuntimeIdentity:
    """What this device offers ``backend`` when it can build a ``precision`` engine for it; CannotBuild
    (422) saying why and what to do otherwise."""
    if backend not in known_keys():
        raise CannotBuild(f"backend: unknown backend {backend!r}; choose from {', '.join(known_keys())}")
    here = identity(backend)
    if not here.can_build:
        why = here.build_note or here.reason
        raise CannotBuild(f"cannot build {backend} engines on this device: {why}")
    if backend == "onnxruntime" and precision == "fp16":
        raise CannotBuild(
            "precision fp16 on onnxruntime: ONNX Runtime's CPU kernels are FP32/INT8, so an FP16 model "
            "would run slower here; build int8 (or fp32 for the graph-optimised model)"
        )
    return here


def alternating_p50s(
    reference: Any,
    engine: Any,
    tensors: Sequence[np.ndarray],
    check: Callable[[], None] = lambda: None,
    runs: int = TIMED_RUNS,
) -> tuple[float, float]:
    """Inference p50 in ms of (engine, reference), timed alternately on the same tensors so that a busy
    CPU slows both alike."""
    for i in range(WARMUP_RUNS):
        reference.infer(tensors[i % len(tensors)])
        engine.infer(tensors[i % len(tensors)])
    ref_s, eng_s = [], []
    for i in range(runs):
        if i % 8 == 0:
            check()
        x = tensors[i % len(tensors)]
        t0 = time.perf_counter()
        reference.infer(x)
        t1 = time.perf_counter()
        engine.infer(x)
        t2 = time.perf_counter()
        ref_s.append(t1 - t0)
        eng_s.append(t2 - t1)
    return round(statistics.median(eng_s) * 1000, 3), round(statistics.median(ref_s) * 1000, 3)


class _Build:
    """One rebuild's log and progress: the lines the result carries, stamped with the seconds since
    the start, and the progress hook with the elapsed time appended."""

    def __init__(self, notes: Sequence[str], progress: Callable[[float, str], None]) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = list(notes)
        self._progress = progress

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, line: str) -> None:
        self.lines.append(f"{self.elapsed():6.1f} s  {line}")
        log.info("engine build: %s", line)

    def stage(self, fraction: float, text: str) -> None:
        self._progress(fraction, f"{text} ({self.elapsed():.0f} s)")


def _load_reference(stack: contextlib.ExitStack, path: Path) -> Any:
    """The FP32 model on ONNX Runtime, fed fixed squares. Engines are built at the fixed square
    input_shape, even from a dynamic-size model (which the pipeline feeds stride rectangles): the
    reference is fed squares too, so calibration, timing and agreement compare like with like."""
    from agent.inference.detector import Detector

    reference = stack.enter_context(Detector.load(path, backend="onnxruntime"))
    reference.stride = None
    return reference


def _build_engine(
    prepared: Path,
    engine_path: Path,
    here: RuntimeIdentity,
    options: BuildOptions,
    *,
    source_sha256: str,
    input_shape: list[int],
    timing_cache: Path,
    build: _Build,
    check_cancelled: Callable[[], None],
) -> EngineFingerprint:
    """Step 3: the engine file from the prepared ONNX, and its fingerprint."""
    backend, precision = options.backend, options.precision
    if backend == "onnxruntime":
        from agent.engines import quantize

        quantize.save_optimised(prepared, engine_path)
        build.say("graph optimised and saved (ONNX Runtime, extended level)")
        return EngineFingerprint(
            runtime=backend,
            runtime_version=here.runtime_version,
            device=here.device,
            compute=here.compute,
            source_sha256=source_sha256,
            precision=precision,  # type: ignore[arg-type]
            input_shape=input_shape,
            built=time.time(),
        )
    from agent.inference.backends import get_backend

    return get_backend(backend).build_engine(  # type: ignore[attr-defined]
        prepared,
        engine_path,
        precision=precision,
        input_shape=tuple(input_shape),
        source_sha256=source_sha256,
        progress=lambda f, s: build.stage(0.72 + 0.13 * f, s),
        check_cancelled=check_cancelled,
        workspace_mb=options.workspace_mb,
        version_compatible=options.version_compatible,
        timing_cache=timing_cache,
        log=build.say,
    )


def _measure(
    reference: Any,
    engine_path: Path,
    backend: str,
    held: list[np.ndarray],
    build: _Build,
    check_cancelled: Callable[[], None],
) -> tuple[float | None, float | None, float | None]:
    """Step 4: (engine p50, FP32 p50, agreement F1) on the held-out frames; Nones where this machine
    cannot run the engine it built (e.g. a fake SDK)."""
    from agent.inference.detector import Detector

    p50 = fp32_p50 = f1 = None
    build.stage(0.86, f"measuring against FP32 on {len(held)} held-out frames")
    try:
        with Detector.load(engine_path, backend=backend) as engine:
            tensors = [reference.preprocess(f)[0] for f in held[:8]] or [
                np.full(reference.input_shape, 114 / 255, dtype=reference.input_dtype)
            ]
            p50, fp32_p50 = alternating_p50s(reference, engine, tensors, check_cancelled)
            check_cancelled()
            if held:
                f1 = round(agreement(reference, engine, held), 4)
    except BackendUnavailable as err:
        build.say(f"not measured: {err}")
    check_cancelled()
    return p50, fp32_p50, f1


def rebuild(
    store: EngineStore,
    source: BuildSource,
    options: BuildOptions,
    *,
    check_cancelled: Callable[[], None] = lambda: None,
    progress: Callable[[float, str], None] = lambda f, s: None,
) -> EngineRebuildResult:
    """Build, measure and store one engine (the steps of the module docstring); the result without
    activation."""
    from agent.engines import quantize
    from agent.engines.fingerprint import write_fingerprint

    backend, precision = options.backend, options.precision
    here = check_buildable(backend, precision)
    build = _Build(options.notes, progress)
    key = engine_key(backend, precision, source.sha256)
    build.say(f"building {key} from {source.version or source.path.name}")
    held = list(options.held_out)
    with contextlib.ExitStack() as stack:
        build.stage(0.01, "loading the FP32 model")
        reference = _load_reference(stack, source.path)
        input_shape = list(reference.input_shape)
        calibration = [reference.preprocess(f)[0] for f in options.calibration] if precision == "int8" else []
        staged = stack.enter_context(store.stage(key, backend))
        try:
            prepared = quantize.prepare(
                source.path,
                staged.work,
                precision=precision,
                input_shape=input_shape,
                input_name=reference.backend.inputs[0].name,
                calibration=calibration,
                check_cancelled=check_cancelled,
                progress=build.stage,
                log=build.say,
            )
            build.stage(0.72, f"building the {backend} {precision} engine")
            fingerprint = _build_engine(
                prepared,
                staged.engine_path,
                here,
                options,
                source_sha256=source.sha256,
                input_shape=input_shape,
                timing_cache=store.root / f".timing-{backend}.cache",
                build=build,
                check_cancelled=check_cancelled,
            )
            check_cancelled()
            # beside the engine before loading it: a backend checks the fingerprint first
            write_fingerprint(staged.engine_path, fingerprint)
            p50, fp32_p50, f1 = _measure(reference, staged.engine_path, backend, held, build, check_cancelled)
            speedup = round(fp32_p50 / p50, 3) if p50 and fp32_p50 else None
            if p50 is not None:
                build.say(
                    f"p50 {p50} ms vs FP32 {fp32_p50} ms (x{speedup}); agreement F1 {f1} on {len(held)} frames"
                )
            meta = {
                "source_version": source.version,
                "source_file": source.path.name,
                "p50_ms": p50,
                "fp32_p50_ms": fp32_p50,
                "agreement_f1": f1,
            }
            build.stage(0.97, "storing the engine")
            info = store.commit(staged, fingerprint, meta)
        except BaseException:
            staged.discard()
            raise
    build.say(f"stored as engines/{key}")
    return EngineRebuildResult(
        engine=info,
        source_size=source.path.stat().st_size,
        size=info.size,
        p50_ms=p50,
        fp32_p50_ms=fp32_p50,
        speedup=speedup,
        agreement_f1=f1,
        agreement_frames=len(held) if f1 is not None else 0,
        calibration_frames=len(calibration),
        elapsed_s=round(build.elapsed(), 2),
        log=build.lines,
    )


__all__ = [
    "BuildOptions",
    "BuildSource",
    "CannotBuild",
    "check_buildable",
    "rebuild",
]
