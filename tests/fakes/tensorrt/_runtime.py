"""FAKE TensorRT runtime, engine and execution context (tests only; see the package docstring).

Executing runs the plan's ONNX model with ONNX Runtime on the fake CUDA device memory, queued on the
stream given to ``execute_async_v3`` (it happens at ``cudaStreamSynchronize``).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
from cuda.bindings import runtime as _cuda

import tensorrt as _pkg
from tensorrt._builder import PLAN_MAGIC, _session
from tensorrt._types import DataType, Dims, ILogger, TensorIOMode, nptype

# --- runtime --------------------------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        # TensorRT's IRuntime::setEngineHostCodeAllowed: a version-compatible plan runs the lean runtime
        # it carries only when the application allows host code in plans.
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        _pkg.DESERIALIZE_CALLS += 1
        data = bytes(serialized_engine)
        err = ILogger.Severity.ERROR
        if not data.startswith(PLAN_MAGIC):
            self.logger.log(err, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization "
                            "assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")  # fmt: skip
            return None
        head, _, onnx_bytes = data[len(PLAN_MAGIC) :].partition(b"\n")
        header = json.loads(head)
        if header.get("version_compatible"):
            # Version-compatible plans (TensorRT >= 8.6) load in the same or a later version, never an older.
            if not self.engine_host_code_allowed:
                self.logger.log(err, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization "
                                "assertion safeVersionRead == kSAFE_SERIALIZATION_VERSION failed. Cannot deserialize "
                                "version-compatible engine: engine host code is not allowed.)")  # fmt: skip
                return None
            older = _version(_pkg.__version__) < _version(header["version"])
        else:
            older = header["version"] != _pkg.__version__
        if older:
            self.logger.log(err, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization "
                            "assertion stdVersionRead == kSERIALIZATION_VERSION failed.Version tag does not match. "
                            f"Note: Current Version: {_pkg.__version__}, Serialized Engine Version: {header['version']})")  # fmt: skip
            return None
        here = f"sm_{_cuda.MAJOR}{_cuda.MINOR}"
        if header["compute"] != here:
            self.logger.log(err, "IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (The engine plan "
                            f"file is generated on an incompatible device, expecting compute {header['compute']} "
                            f"got compute {here}, please rebuild.)")  # fmt: skip
            return None
        return ICudaEngine(header, onnx_bytes)


class ICudaEngine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes) -> None:
        self._header = header
        self._onnx = onnx_bytes
        self._io: dict[str, tuple[TensorIOMode, Dims, DataType]] = {}
        self._profile: dict[str, Dims] = {}
        for name, shape, dtype, built in header["inputs"]:
            self._io[name] = (TensorIOMode.INPUT, Dims(shape), DataType(dtype))
            self._profile[name] = Dims(built)
        for name, shape, dtype in header["outputs"]:
            self._io[name] = (TensorIOMode.OUTPUT, Dims(shape), DataType(dtype))
        self._names = list(self._io)
        self._lock = threading.Lock()
        self._ort: Any = None

    num_io_tensors = property(lambda self: len(self._names))

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._io[name][0] if name in self._io else TensorIOMode.NONE

    def get_tensor_shape(self, name: str) -> Dims:
        return self._io[name][1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._io[name][2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        """[min, opt, max] of an input in an optimisation profile (the fake builds at one shape)."""
        return [self._profile[name]] * 3

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            if self._ort is None:
                self._ort = _session(self._onnx)
            fp16 = self._header["fp16"] and not self._header["int8"]
            if fp16:  # the fake's stand-in for half-precision kernels: values rounded to float16
                feeds = {k: v.astype(np.float16).astype(v.dtype) for k, v in feeds.items()}
            outputs = self._ort.run(None, feeds)
        if fp16:
            outputs = [o.astype(np.float16).astype(o.dtype) for o in outputs]
        return outputs


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._addresses: dict[str, int] = {}
        self._shapes: dict[str, Dims] = {
            n: s
            for n, (mode, s, _) in engine._io.items()
            if mode == TensorIOMode.INPUT and all(d > 0 for d in s)
        }

    def set_input_shape(self, name: str, shape: Any) -> bool:
        mode, declared, _ = self.engine._io.get(name, (TensorIOMode.NONE, Dims(), DataType.FLOAT))
        shape = Dims(int(d) for d in shape)
        if mode != TensorIOMode.INPUT or len(shape) != len(declared):
            return False
        if any(d != -1 and d != s for d, s in zip(declared, shape, strict=True)):
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        return self._shapes.get(name, self.engine.get_tensor_shape(name))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine._io:
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        engine = self.engine
        missing = [n for n in engine._names if n not in self._addresses]
        if missing:
            return False  # real TensorRT logs "Address is not set for tensor ..." and returns False
        inputs = [n for n in engine._names if engine._io[n][0] == TensorIOMode.INPUT]
        if any(n not in self._shapes for n in inputs):
            return False
        outputs = [n for n in engine._names if engine._io[n][0] == TensorIOMode.OUTPUT]
        addresses = dict(self._addresses)
        shapes = dict(self._shapes)

        def run() -> None:
            feeds = {
                n: _cuda.device_array(addresses[n], shapes[n], nptype(engine._io[n][2])).copy()
                for n in inputs
            }
            for name, value in zip(outputs, engine._run(feeds), strict=True):
                target = _cuda.device_array(addresses[name], value.shape, nptype(engine._io[name][2]))
                target[...] = value

        return _cuda.enqueue(stream_handle, run)
