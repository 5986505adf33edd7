"""Device memory for the TensorRT backend, through cuda-python's CUDA runtime API.

TensorRT reads and writes tensors at CUDA device addresses; this module is the only place that talks
to CUDA: the device's name and compute capability, device buffers, a stream, and asynchronous copies.
cuda-python is imported inside the functions (``cuda.bindings.runtime`` since cuda-python 12.6,
``cuda.cudart`` before), so a machine without it still imports the agent. Every call returns a tuple
whose first item is a ``cudaError_t``; :func:`_call` turns a failure into one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.core.errors import AgentError, BackendUnavailable

CUDA_HINT = "pip install cuda-python matching the CUDA version (JetPack ships it as python3-cuda)"


class CudaError(AgentError):
    """A CUDA runtime call failed (out of memory, a lost device): not the technician's input."""

    status = 500


def cudart() -> Any:
    """cuda-python's runtime module; BackendUnavailable saying what to install when it is missing."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart as runtime
    except ImportError as err:
        raise BackendUnavailable(f"cuda-python not importable ({err}): {CUDA_HINT}") from None
    return runtime


def _call(rt: Any, name: str, *args: Any) -> Any:
    """``rt.<name>(*args)``; the results after the error code (one value unwrapped), or CudaError."""
    result = getattr(rt, name)(*args)
    err, rest = result[0], result[1:]
    if int(err) != 0:
        text = rt.cudaGetErrorString(err)[1]
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise CudaError(f"CUDA {name} failed: {text} (error {int(err)})")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


@dataclass(frozen=True, slots=True)
class GpuInfo:
    name: str
    major: int
    minor: int

    @property
    def compute(self) -> str:
        """The compute capability as TensorRT and nvcc spell the target: "sm_87"."""
        return f"sm_{self.major}{self.minor}"


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device``; BackendUnavailable when there is none."""
    rt = cudart()
    try:
        count = _call(rt, "cudaGetDeviceCount")
    except CudaError as err:
        raise BackendUnavailable(
            f"no usable CUDA device ({err}): check the NVIDIA driver (nvidia-smi)"
        ) from None
    if not count:
        raise BackendUnavailable("no CUDA device found: check the NVIDIA driver (nvidia-smi)")
    props = _call(rt, "cudaGetDeviceProperties", device)
    name = props.name
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
    return GpuInfo(name=name.strip(), major=int(props.major), minor=int(props.minor))


class DeviceBuffer:
    """``nbytes`` of device memory at ``ptr``; freed by :meth:`free` (safe to call twice)."""

    def __init__(self, nbytes: int) -> None:
        self._rt = cudart()
        self.nbytes = int(nbytes)
        self.ptr: int = int(_call(self._rt, "cudaMalloc", max(self.nbytes, 1)))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            _call(self._rt, "cudaFree", ptr)


class Stream:
    """A CUDA stream with the asynchronous copies the backend needs; :meth:`sync` waits for all of it."""

    def __init__(self) -> None:
        self._rt = cudart()
        self._stream: Any = _call(self._rt, "cudaStreamCreate")

    @property
    def handle(self) -> int:
        """The raw ``cudaStream_t`` TensorRT's ``execute_async_v3`` takes."""
        return int(self._stream)

    def to_device(self, dst: DeviceBuffer, host: np.ndarray) -> None:
        """Queue a copy of ``host`` (C-contiguous, kept alive until :meth:`sync`) into ``dst``."""
        if host.nbytes > dst.nbytes:
            raise CudaError(
                f"host array of {host.nbytes} bytes does not fit a {dst.nbytes}-byte device buffer"
            )
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _call(self._rt, "cudaMemcpyAsync", dst.ptr, host.ctypes.data, host.nbytes, kind, self._stream)

    def to_host(self, host: np.ndarray, src: DeviceBuffer) -> None:
        """Queue a copy of ``src`` into ``host`` (C-contiguous, writable); valid after :meth:`sync`."""
        if host.nbytes > src.nbytes:
            raise CudaError(f"a {src.nbytes}-byte device buffer cannot fill a {host.nbytes}-byte array")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _call(self._rt, "cudaMemcpyAsync", host.ctypes.data, src.ptr, host.nbytes, kind, self._stream)

    def sync(self) -> None:
        _call(self._rt, "cudaStreamSynchronize", self._stream)

    def destroy(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            _call(self._rt, "cudaStreamDestroy", stream)
