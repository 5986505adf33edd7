"""TensorRT backend: serialised engines (``.engine`` plans) run by tensor name with ``execute_async_v3``.

A plan deserialises only on the TensorRT version and GPU it was built for, so loading compares the
engine's ``fingerprint.json`` with this device first and refuses a stale engine (StaleEngine, 409)
without touching the runtime; a plan without a fingerprint that TensorRT refuses anyway (it returns
None and logs why) becomes one ModelError line saying to rebuild. Device memory goes through
:mod:`agent.inference.backends.cuda_mem`. ``tensorrt`` is imported inside the functions, never at module top.
Building engines lives in :mod:`agent.inference.backends.tensorrt_build`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import BackendUnavailable, ModelError
from agent.engines.fingerprint import StaleEngine, read_fingerprint, stale_reason
from agent.inference.backends import cuda_mem
from agent.inference.backends.base import Backend, TensorSpec
from agent.inference.backends.probes import probe_tensorrt
from agent.inference.backends.sidecar import read_metadata
from agent.inference.backends.tensorrt_sdk import captured, import_trt, last_error, trt_logger
from fieldtui.protocol import EngineFingerprint, RuntimeIdentity

log = logging.getLogger("fieldtui.agent.backends.tensorrt")

REBUILD_HINT = "rebuild it on this device (fieldtui-agent engines rebuild --backend tensorrt)"


class TensorRtBackend(Backend):
    """A TensorRT engine on this device's GPU: one execution context, device buffers bound by tensor
    name once, and a CUDA stream; ``infer`` copies in, enqueues, copies out and synchronises."""

    key = "tensorrt"
    model_format = "engine"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, reason, version = probe_tensorrt()
        if not ok:
            return False, reason
        try:
            gpu = cuda_mem.gpu_info()
        except BackendUnavailable as err:
            return False, f"{reason}, but {err}"
        return True, f"TensorRT {version} on {gpu.name} ({gpu.compute})"

    @classmethod
    def version(cls) -> str | None:
        return probe_tensorrt()[2]

    @classmethod
    def identity(cls) -> RuntimeIdentity:
        ok, reason, version = probe_tensorrt()
        device = compute = None
        if ok:
            try:
                gpu = cuda_mem.gpu_info()
                device, compute = gpu.name, gpu.compute
                reason = f"TensorRT {version} on {gpu.name} ({gpu.compute})"
            except BackendUnavailable as err:
                ok, reason = False, f"{reason}, but {err}"
        return RuntimeIdentity(
            runtime=cls.key,
            available=ok,
            reason=reason,
            runtime_version=version,
            device=device,
            compute=compute,
            can_build=ok,
            build_note=None if ok else "engines are built on the device itself, with TensorRT and its GPU",
        )

    @classmethod
    def model_for_precision(cls, path: Path, precision: str) -> tuple[Path | None, str | None]:
        """A plan's precision is fixed at build time: an engine serves the precision it was built at;
        an ONNX model needs an engine built from it first."""
        path = Path(path)
        if path.suffix != ".engine":
            return None, (
                f"{precision} on tensorrt: no engine built from {path.name} yet; build one with "
                f"`fieldtui-agent engines rebuild --backend tensorrt --precision {precision}`"
            )
        built = read_fingerprint(path)
        if built is None or built.precision == precision:
            return path, None
        return None, f"{path.name} is a {built.precision} engine; build a {precision} one to measure it"

    @classmethod
    def build_engine(cls, onnx_path: Path, out_path: Path, **options: Any) -> EngineFingerprint:
        """Build on this device. The keywords are :meth:`Backend.build_engine`'s contract, checked by
        :func:`agent.inference.backends.tensorrt_build.build_engine`, which does the work."""
        from agent.inference.backends.tensorrt_build import build_engine

        return build_engine(cls, onnx_path, out_path, **options)

    def __init__(
        self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._buffers: dict[str, cuda_mem.DeviceBuffer] = {}
        self._stream: cuda_mem.Stream | None = None
        self._context: Any = None
        trt = import_trt()
        here = self.identity()
        if not here.available:
            raise BackendUnavailable(here.reason)
        built = read_fingerprint(self.path)
        if built is not None:  # checked before the plan is read: a stale one is never deserialised
            why = stale_reason(built, here)
            if why:
                raise StaleEngine(f"{self.path.name} is stale: {why}")
        try:
            plan = self.path.read_bytes()
        except OSError as err:
            raise ModelError(f"cannot read engine {self.path}: {err.strerror or err}") from None
        logger = trt_logger(trt)
        with captured(logger) as lines:
            self._runtime = trt.Runtime(logger)
            if built is not None and built.version_compatible:
                # a version-compatible plan runs the lean runtime it carries: host code TensorRT only
                # executes when allowed; the agent built this plan itself (fingerprint beside it)
                self._runtime.engine_host_code_allowed = True
            engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ModelError(
                f"{self.path.name} cannot be loaded by TensorRT {here.runtime_version} on {here.device} "
                f"({here.compute}): {last_error(lines)}. It was built for another TensorRT version or GPU (or is "
                f"not a TensorRT engine); {REBUILD_HINT}"
            )
        self._engine = engine
        try:
            self._bind(trt)
        except BaseException:
            self.close()
            raise
        self.metadata = read_metadata(self.path)

    def _bind(self, trt: Any) -> None:
        engine = self._engine
        context = engine.create_execution_context()
        if context is None:
            raise ModelError(
                f"TensorRT cannot create an execution context for {self.path.name} (out of GPU memory?)"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.inputs, self.outputs = [], []
        for name in input_names:
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # dynamic: run at the optimisation profile's opt shape
                shape = tuple(int(d) for d in engine.get_tensor_profile_shape(name, 0)[1])
            if not context.set_input_shape(name, shape):
                raise ModelError(f"{self.path.name}: TensorRT refuses input shape {list(shape)} for {name}")
            self.inputs.append(TensorSpec(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
        for name in output_names:
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            self.outputs.append(TensorSpec(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
        for spec in [*self.inputs, *self.outputs]:
            nbytes = int(np.prod(spec.shape)) * spec.dtype.itemsize
            buffer = self._buffers[spec.name] = cuda_mem.DeviceBuffer(nbytes)
            if not context.set_tensor_address(spec.name, buffer.ptr):
                raise ModelError(
                    f"{self.path.name}: TensorRT refuses the device address for tensor {spec.name}"
                )
        self._host_out = [np.empty(s.shape, s.dtype) for s in self.outputs]
        self._stream = cuda_mem.Stream()
        self._context = context

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        with self._lock:  # one context, one set of buffers: one inference at a time
            context, stream = self._context, self._stream
            if context is None or stream is None:
                raise ModelError(f"{self.path.name} was closed (the model was swapped or unloaded)")
            spec = self.inputs[0]
            x = np.ascontiguousarray(tensor, dtype=spec.dtype)
            if x.shape != spec.shape:
                raise ModelError(f"{self.path.name} takes {list(spec.shape)} inputs, got {list(x.shape)}")
            stream.to_device(self._buffers[spec.name], x)
            if not context.execute_async_v3(stream.handle):
                stream.sync()
                raise ModelError(
                    f"TensorRT could not run {self.path.name} (execute_async_v3 failed; see the log)"
                )
            for out, host in zip(self.outputs, self._host_out, strict=True):
                stream.to_host(host, self._buffers[out.name])
            stream.sync()  # x must stay alive until here: the copy in reads it asynchronously
            return [h.copy() for h in self._host_out]

    def close(self) -> None:
        with self._lock:
            self._context = None
            if self._stream is not None:
                self._stream.destroy()
                self._stream = None
            for buffer in self._buffers.values():
                buffer.free()
            self._buffers.clear()
            self._engine = None
