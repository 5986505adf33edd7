"""Building TensorRT engines on the device, with TensorRT 10's Python API.

ONNX -> ``OnnxParser`` -> explicit-batch network -> ``build_serialized_network`` with a workspace memory
pool limit, FP16, and INT8 from a QDQ model (explicit quantisation: the scales are in the ONNX, so the
deprecated calibrators are not used). A timing cache file makes rebuilds much faster. Builds take
minutes on a Jetson, so an ``IProgressMonitor`` reports each phase with the elapsed time, and returns
False from ``step_complete`` once the job is cancelled, which makes TensorRT stop and return None.
Nothing is written until the plan exists; the engine and ``metadata.json`` land next to each other.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.core.errors import AgentError, BackendUnavailable, ModelError
from agent.inference.backends.sidecar import metadata_path, onnx_metadata, write_metadata
from agent.inference.backends.tensorrt_sdk import captured, import_trt, last_error, trt_logger
from agent.inference.precision import is_qdq
from fieldtui.protocol import EngineFingerprint
from fieldtui.protocol.files import atomic_write

PRECISIONS = ("fp32", "fp16", "int8")
# Progress: parsing takes the first 5 %, the build phases the rest up to 95 %, writing the end.
PARSED, BUILT = 0.05, 0.95


def _network_flags(trt: Any) -> int:
    # TensorRT 10 networks are always explicit batch (the flag is deprecated and ignored); 8.x needs it.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 1 << int(flag) if flag is not None else 0


class PhaseProgress:
    """What a TensorRT build monitor does, without TensorRT: turns phase starts, steps and finishes into
    "phase step/steps, elapsed" progress and a fraction that only grows, and turns a cancellation into
    False (never an exception raised into TensorRT). TensorRT may call it from several threads."""

    def __init__(self, progress: Callable[[float, str], None], check_cancelled: Callable[[], None]) -> None:
        self._progress = progress
        self._check_cancelled = check_cancelled
        self.started = time.monotonic()
        self.cancelled: BaseException | None = None
        self.phases: list[str] = []  # names of the phases seen, in order (for the build log)
        self._open: dict[str, tuple[str | None, int]] = {}
        self._top_done = 0
        self._last = PARSED
        self._lock = threading.Lock()

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        with self._lock:
            self._open[phase_name] = (parent_phase, max(int(num_steps), 1))
            self.phases.append(phase_name)
        self._report(phase_name, 0)

    def step_complete(self, phase_name: str, step: int) -> bool:
        try:
            self._check_cancelled()
        except Exception as err:
            self.cancelled = err
            return False
        self._report(phase_name, int(step) + 1)
        return True

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            parent, _ = self._open.pop(phase_name, (None, 1))
            if parent is None:
                self._top_done += 1

    def _top(self, phase_name: str) -> str:
        parent, top = self._open.get(phase_name, (None, 1))[0], phase_name
        while parent is not None:  # the top-level phase sets the fraction; nested ones the text
            top = parent
            parent = self._open.get(parent, (None, 1))[0]
        return top

    def _report(self, phase_name: str, done: int) -> None:
        with self._lock:
            steps = self._open.get(phase_name, (None, 1))[1]
            top = self._top(phase_name)
            # TensorRT does not say how many top-level phases follow: each finished one closes half of
            # the remaining gap, and the current one interpolates towards the next.
            base = BUILT - (BUILT - PARSED) * 0.5**self._top_done
            nxt = BUILT - (BUILT - PARSED) * 0.5 ** (self._top_done + 1)
            frac = done / steps if top == phase_name else 0.0
            self._last = fraction = max(self._last, base + (nxt - base) * frac)
        name = phase_name if top == phase_name else f"{top} > {phase_name}"
        elapsed = time.monotonic() - self.started
        with contextlib.suppress(Exception):  # progress reporting must not break a build
            self._progress(fraction, f"building: {name} {done}/{steps} ({elapsed:.0f} s)")


def _monitor(trt: Any, progress: Callable[[float, str], None], check_cancelled: Callable[[], None]) -> Any:
    """An ``IProgressMonitor`` (TensorRT's class, so only made once TensorRT is imported) that hands each
    call to a :class:`PhaseProgress`."""

    class BuildMonitor(PhaseProgress, trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            PhaseProgress.__init__(self, progress, check_cancelled)

    return BuildMonitor()


def _check_input_shape(network: Any, input_shape: tuple[int, ...], name: str) -> list[Any]:
    """The inputs that need an optimisation profile (dynamic dims); AgentError when a fixed one differs."""
    dynamic = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in dims):
            if len(dims) != len(input_shape):
                raise AgentError(
                    f"{name} input {tensor.name} has {len(dims)} dimensions, not {len(input_shape)}",
                    status=422,
                )
            dynamic.append(tensor)
        elif dims != tuple(input_shape):
            raise AgentError(
                f"{name} has a fixed input shape {list(dims)}, not {list(input_shape)}: build at {list(dims)} "
                "or re-export the model with that size",
                status=422,
            )
    return dynamic


def build_engine(
    backend_cls: Any,
    onnx_path: Path,
    out_path: Path,
    *,
    precision: str,
    input_shape: tuple[int, ...],
    source_sha256: str,
    progress: Callable[[float, str], None],
    check_cancelled: Callable[[], None],
    workspace_mb: int | None = None,
    version_compatible: bool = False,
    timing_cache: Path | None = None,
    log: Callable[[str], None],
) -> EngineFingerprint:
    """Build a TensorRT engine from ``onnx_path`` (for INT8: the QDQ model) and write it at ``out_path``
    with ``metadata.json`` beside it; the fingerprint for the caller to write. Cancellation re-raises
    what ``check_cancelled`` raised (JobCancelled) and leaves no file behind."""
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if precision not in PRECISIONS:
        raise AgentError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}", status=422)
    trt = import_trt()
    here = backend_cls.identity()
    if not here.available:
        raise BackendUnavailable(here.reason)
    if not onnx_path.is_file():
        raise ModelError(f"cannot read {onnx_path}: no such file")
    # The graph's op types, read without the weights (models with external data exist, and a byte
    # search also matches a name or doc string that merely spells the operator).
    if precision == "int8" and not is_qdq(onnx_path):
        raise AgentError(
            f"{onnx_path.name} has no QuantizeLinear/DequantizeLinear nodes: TensorRT INT8 engines are built "
            "from a QDQ model (make one with the ONNX Runtime INT8 rebuild first)",
            status=422,
        )
    started = time.monotonic()
    logger = trt_logger(trt)
    with captured(logger, log) as lines:
        progress(0.0, f"parsing {onnx_path.name}")
        builder = trt.Builder(logger)
        network = builder.create_network(_network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or [last_error(lines)]
            for error in errors:
                log(f"ONNX parser: {error}")
            raise ModelError(
                f"TensorRT cannot parse {onnx_path.name} ({errors[0][:240]}; {len(errors)} error(s) in all): "
                "re-export it with a supported opset (17 is safe) or check the build log"
            )
        log(f"parsed {onnx_path.name}: {network.num_layers} layers, {network.num_inputs} input(s)")
        check_cancelled()
        config = builder.create_builder_config()
        if workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        if precision in ("fp16", "int8"):
            # INT8 also allows FP16, so the layers a QDQ model leaves unquantised do not fall back to FP32.
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        if version_compatible:
            # The plan carries the lean runtime and loads on later TensorRT versions (8.6 and up), at
            # some cost in speed; the rebuild's own p50 against FP32 shows that cost on this device.
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
            log("version-compatible plan: it keeps loading after a TensorRT upgrade (lean runtime inside)")
        dynamic = _check_input_shape(network, tuple(input_shape), onnx_path.name)
        if dynamic:
            profile = builder.create_optimization_profile()
            for tensor in dynamic:
                profile.set_shape(tensor.name, input_shape, input_shape, input_shape)
            config.add_optimization_profile(profile)
        if timing_cache is not None:
            _use_timing_cache(config, Path(timing_cache), log)
        monitor = _monitor(trt, progress, check_cancelled)
        config.progress_monitor = monitor
        progress(PARSED, f"building {precision} engine ({time.monotonic() - started:.0f} s)")
        plan = builder.build_serialized_network(network, config)
        if monitor.cancelled is not None:
            log(f"build cancelled after {time.monotonic() - started:.0f} s")
            raise monitor.cancelled
        if plan is None:
            raise ModelError(f"TensorRT could not build {onnx_path.name}: {last_error(lines)}")
        check_cancelled()  # a cancel that arrived after the last step still wins: nothing written yet
        progress(BUILT, "writing the engine")
        try:
            atomic_write(out_path, memoryview(plan), mode=0o644)
            write_metadata(out_path, onnx_metadata(onnx_path))
        except BaseException:
            for written in (out_path, metadata_path(out_path)):
                with contextlib.suppress(FileNotFoundError):
                    written.unlink()
            raise
        if timing_cache is not None:
            _save_timing_cache(config, Path(timing_cache), log)
    elapsed = time.monotonic() - started
    log(f"built {out_path.name} ({out_path.stat().st_size / 1e6:.1f} MB, {precision}) in {elapsed:.0f} s")
    progress(1.0, f"built in {elapsed:.0f} s")
    return EngineFingerprint(
        runtime=backend_cls.key,
        runtime_version=here.runtime_version,
        device=here.device,
        compute=here.compute,
        source_sha256=source_sha256,
        precision=precision,
        input_shape=list(input_shape),
        built=time.time(),
        version_compatible=version_compatible,
    )


def _use_timing_cache(config: Any, path: Path, log: Callable[[str], None]) -> None:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        blob = b""
    except OSError as err:
        log(f"timing cache {path.name} unreadable ({err.strerror or err}); starting a new one")
        blob = b""
    cache = config.create_timing_cache(blob)
    if cache is None and blob:  # corrupt or from another TensorRT version: start afresh
        log(f"timing cache {path.name} is not usable by this TensorRT; starting a new one")
        cache = config.create_timing_cache(b"")
    if cache is not None:
        config.set_timing_cache(cache, False)
        log(
            f"timing cache {path.name}: {len(blob)} bytes loaded"
            if blob
            else f"timing cache {path.name}: new"
        )


def _save_timing_cache(config: Any, path: Path, log: Callable[[str], None]) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        return
    data = memoryview(cache.serialize())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o644)
    except OSError as err:  # the engine is built; a cache that cannot be saved only costs the next build time
        log(f"timing cache not saved ({err.strerror or err})")
        return
    log(f"timing cache {path.name}: {data.nbytes} bytes saved")
