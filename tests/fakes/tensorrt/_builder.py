"""FAKE TensorRT network, ONNX parser, builder config and builder (tests only; see the package docstring).

A "plan" is a JSON header (TensorRT version, GPU compute capability, precision flags, I/O tensors) plus
the ONNX bytes; the timing cache is a JSON map of layer keys, so a second build reports cache hits.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from cuda.bindings import runtime as _cuda

import tensorrt as _pkg
from tensorrt._types import (
    ONNX_TYPES,
    BuilderFlag,
    DataType,
    Dims,
    ErrorCode,
    IHostMemory,
    ILogger,
    IProgressMonitor,
    MemoryPoolType,
)

PLAN_MAGIC = b"FAKE-TENSORRT-PLAN\n"
CACHE_MAGIC = b"FAKE-TENSORRT-TIMING-CACHE\n"

# --- network and parser -----------------------------------------------------------------------


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, Dims(shape), dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self.onnx: bytes = b""
        self.op_types: list[str] = []

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))
    num_layers = property(lambda self: len(self.op_types))

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ParserError:
    def __init__(self, code: ErrorCode, desc: str, node: int = -1) -> None:
        self._code, self._desc, self._node = code, desc, node

    def code(self) -> ErrorCode:
        return self._code

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def __str__(self) -> str:
        return f"In node {self._node} (parseGraph): {self._code.name}: {self._desc}"


def _dims(value_info: Any) -> tuple[int, ...]:
    return tuple(
        d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim
    )


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self._network, self._logger = network, logger
        self._errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(bytes(model))
            onnx.checker.check_model(proto)
        except Exception as err:
            self._errors.append(
                ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to parse ONNX model: {err}")
            )
            return False
        initializers = {i.name for i in proto.graph.initializer}
        net = self._network
        for vi in proto.graph.input:
            if vi.name not in initializers:
                dtype = ONNX_TYPES.get(vi.type.tensor_type.elem_type, DataType.FLOAT)
                net._inputs.append(ITensor(vi.name, _dims(vi), dtype))
        for vi in proto.graph.output:
            net._outputs.append(
                ITensor(vi.name, _dims(vi), ONNX_TYPES.get(vi.type.tensor_type.elem_type, DataType.FLOAT))
            )
        net.onnx = bytes(model)
        net.op_types = [n.op_type for n in proto.graph.node]
        return True

    def parse_from_file(self, model: str) -> bool:
        try:
            with open(model, "rb") as f:
                data = f.read()
        except OSError as err:
            self._errors.append(
                ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to open file {model}: {err}")
            )
            return False
        return self.parse(data, model)


# --- builder ------------------------------------------------------------------------------------


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
        self.shapes[input] = (Dims(min), Dims(opt), Dims(max))


class ITimingCache:
    def __init__(self, entries: dict[str, int]) -> None:
        self.entries = entries

    def serialize(self) -> IHostMemory:
        return IHostMemory(CACHE_MAGIC + json.dumps(self.entries, sort_keys=True).encode())

    def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self.entries.update(input_cache.entries)
        return True


class IBuilderConfig:
    def __init__(self) -> None:
        self._pools: dict[MemoryPoolType, int] = {MemoryPoolType.WORKSPACE: 1 << 40}
        self._flags: set[BuilderFlag] = set()
        self._cache: ITimingCache | None = None
        self._profiles: list[IOptimizationProfile] = []
        self.progress_monitor: IProgressMonitor | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self._pools[pool]

    def set_flag(self, flag: BuilderFlag) -> None:
        self._flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags.discard(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self._flags

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache({})
        if not data.startswith(CACHE_MAGIC):
            return None
        return ITimingCache(json.loads(data[len(CACHE_MAGIC) :]))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._cache

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1


class _Cancelled(Exception):
    pass


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> IHostMemory | None:
        err = ILogger.Severity.ERROR
        if not network.onnx:
            self.logger.log(err, "Network must have at least one output")
            return None
        shapes = _resolve_shapes(network, config)
        if shapes is None:
            self.logger.log(
                err, "Network has dynamic or shape inputs, but no optimization profile has been defined."
            )
            return None
        int8 = BuilderFlag.INT8 in config._flags
        if int8 and not {"QuantizeLinear", "DequantizeLinear"} & set(network.op_types):
            self.logger.log(
                ILogger.Severity.WARNING,
                "Calibrator is not being used. Users must provide dynamic range for all tensors",
            )
        cache = config._cache
        hits = 0
        try:
            self._phase(config, "Graph optimization", None, 3)
            layers = [f"{op}#{i}" for i, op in enumerate(network.op_types)]
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Tactic selection", None, len(layers))
            for step, layer in enumerate(layers):
                key = f"{layer}:{'fp16' if BuilderFlag.FP16 in config._flags else 'fp32'}"
                if cache is not None:
                    hits += key in cache.entries
                    cache.entries[key] = 1
                if monitor is not None and not monitor.step_complete("Tactic selection", step):
                    monitor.phase_finish("Tactic selection")
                    raise _Cancelled
            if monitor is not None:
                monitor.phase_finish("Tactic selection")
            self._phase(config, "Engine serialization", None, 1)
        except _Cancelled:
            self.logger.log(err, "Engine build was cancelled by the progress monitor.")
            return None
        outputs = _output_shapes(network.onnx, shapes)
        header = {
            "version": _pkg.__version__,
            "compute": f"sm_{_cuda.MAJOR}{_cuda.MINOR}",
            "fp16": BuilderFlag.FP16 in config._flags,
            "int8": int8,
            "version_compatible": BuilderFlag.VERSION_COMPATIBLE in config._flags,
            "inputs": [[t.name, list(t.shape), int(t.dtype), list(shapes[t.name])] for t in network._inputs],
            "outputs": [
                [t.name, list(s), int(t.dtype)] for t, s in zip(network._outputs, outputs, strict=True)
            ],
        }
        _pkg.BUILDS.append({"flags": sorted(f.name for f in config._flags), "workspace": config._pools[MemoryPoolType.WORKSPACE],
                       "cache_hits": hits, "layers": len(network.op_types)})  # fmt: skip
        return IHostMemory(PLAN_MAGIC + json.dumps(header).encode() + b"\n" + network.onnx)

    @staticmethod
    def _phase(config: IBuilderConfig, name: str, parent: str | None, steps: int) -> None:
        monitor = config.progress_monitor
        if monitor is None:
            return
        monitor.phase_start(name, parent, steps)
        for step in range(steps):
            if not monitor.step_complete(name, step):
                monitor.phase_finish(name)
                raise _Cancelled
        monitor.phase_finish(name)


def _resolve_shapes(network: INetworkDefinition, config: IBuilderConfig) -> dict[str, tuple[int, ...]] | None:
    """Each input's build-time (opt) shape; None when a dynamic input has no profile."""
    shapes = {}
    for t in network._inputs:
        if all(d > 0 for d in t.shape):
            shapes[t.name] = tuple(t.shape)
            continue
        profile = next((p for p in config._profiles if t.name in p.shapes), None)
        if profile is None:
            return None
        shapes[t.name] = tuple(profile.shapes[t.name][1])
    return shapes


def _session(onnx_bytes: bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def _output_shapes(onnx_bytes: bytes, shapes: dict[str, tuple[int, ...]]) -> list[tuple[int, ...]]:
    session = _session(onnx_bytes)
    feeds = {i.name: np.zeros(shapes[i.name], np.float32) for i in session.get_inputs()}
    return [tuple(o.shape) for o in session.run(None, feeds)]
