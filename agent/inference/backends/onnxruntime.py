"""ONNX Runtime backend: ``.onnx`` models on CPU, CUDA or the TensorRT execution provider.

``onnxruntime`` is imported inside the functions below, never at module top, so the registry can list
this backend (and say why it is unavailable) on a machine without it.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import BackendUnavailable, ModelError
from agent.inference.backends.base import Backend, TensorSpec
from fieldtui.protocol import RuntimeIdentity

# Best first; only the ones this onnxruntime build offers are used.
PROVIDER_PRIORITY = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
INSTALL_HINT = "pip install 'fieldtui[agent]' (or onnxruntime-gpu on CUDA machines)"

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def default_threads() -> int:
    """Intra-op threads a session starts with when none are asked for: every core this process may
    run on but one, so capture and preprocessing of the next frame have a core while the model infers.

    Only a starting point: right for a small model, wrong for one where inference is nearly all the
    work. The serving pipeline measures the count that gives it the most frames per second
    (agent/frames/thread_policy.py) and switches to it. One core: one thread.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # what a cgroup or taskset leaves us, not the board's total
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailable(f"onnxruntime not importable ({err}): {INSTALL_HINT}") from None
    return onnxruntime


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in node.shape)
    return TensorSpec(node.name, shape, np.dtype(_ORT_TYPES.get(node.type, np.float32)))


def _ort_reason(err: Exception) -> str:
    # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from x failed:Protobuf parsing failed."
    # -> "INVALID_PROTOBUF: Protobuf parsing failed." : the code and the cause, not the noise.
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    match = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+) : (.*)", text)
    if match:
        code, rest = match.groups()
        rest = rest.split("failed:", 1)[-1].strip()
        text = f"{code}: {rest}"
    return text[:300]


class OnnxRuntimeBackend(Backend):
    """An ``onnxruntime.InferenceSession`` with the best available provider and full graph optimisation."""

    key = "onnxruntime"
    model_format = "onnx"
    knobs = frozenset({"threads", "batch"})

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            ort = _import_ort()
        except BackendUnavailable as err:
            return False, str(err)
        return True, f"onnxruntime {ort.__version__} ready on {', '.join(cls.providers())}"

    @classmethod
    def version(cls) -> str | None:
        try:
            return str(_import_ort().__version__)
        except BackendUnavailable:
            return None

    @classmethod
    def providers(cls) -> list[str]:
        try:
            offered = set(_import_ort().get_available_providers())
        except BackendUnavailable:
            return []
        return [p for p in PROVIDER_PRIORITY if p in offered]

    @classmethod
    def identity(cls) -> RuntimeIdentity:
        """ONNX Runtime builds its own engines here (agent/engines/quantize.py): a saved optimised graph is tied
        to the ORT version and the execution provider it was optimised for, INT8 kernels to the CPU
        architecture, so those are what an engine's fingerprint carries."""
        ok, reason = cls.available()
        providers = cls.providers()
        return RuntimeIdentity(
            runtime=cls.key,
            available=ok,
            reason=reason,
            runtime_version=cls.version(),
            device=platform.machine() or None,
            compute=providers[0] if providers else None,
            can_build=ok,
            build_note=None if ok else reason,
        )

    def __init__(
        self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        self.path = Path(path)
        self._providers = providers or self.providers()
        self.threads: int = threads or default_threads()
        self.threads_requested = threads  # None: the serving pipeline may measure and change it
        # Idle pool threads sleep instead of spinning by default: in the agent they share the CPU with
        # capture, preprocessing and the control plane, which spinning threads can starve. Whether that
        # holds for a given model and machine is measured by agent/frames/thread_policy.py.
        self.spinning = False
        self._session: Any = self._open(self.threads, self.spinning)
        self.inputs = [_spec(i) for i in self._session.get_inputs()]
        self.outputs = [_spec(o) for o in self._session.get_outputs()]
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.active_providers: list[str] = list(self._session.get_providers())
        self._input_name = self.inputs[0].name if self.inputs else ""
        self._output_names = [o.name for o in self.outputs]

    def _open(self, threads: int, spinning: bool) -> Any:
        ort = _import_ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.log_severity_level = 3  # errors only: ORT's warnings are not the technician's business
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=self._providers)
        except Exception as err:  # ORT raises its own pybind exception types; translate them all
            raise ModelError(
                f"{self.path.name} is not a loadable ONNX model ({_ort_reason(err)}): re-export it "
                "(e.g. `yolo export format=onnx`) or copy it again if the transfer was cut short"
            ) from None

    def reconfigure(self, threads: int, spinning: bool) -> None:
        """Run from now on with ``threads`` intra-op threads and spinning on or off. ONNX Runtime fixes
        both when a session is created, so a new session replaces the old one; a call already inside
        the old session finishes there (``infer`` holds its own reference), nothing waits."""
        if self._session is None:
            raise ModelError(f"{self.path.name} was closed (the model was swapped or unloaded)")
        if (threads, spinning) == (self.threads, self.spinning):
            return
        session = self._open(threads, spinning)
        self._session, self.threads, self.spinning = session, threads, spinning

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        session = self._session
        if session is None:
            raise ModelError(f"{self.path.name} was closed (the model was swapped or unloaded)")
        return session.run(self._output_names, {self._input_name: tensor})

    def close(self) -> None:
        # ORT frees the session with its last reference; drop ours so the memory goes now.
        self._session = None
