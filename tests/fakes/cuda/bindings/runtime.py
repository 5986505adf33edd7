"""FAKE ``cuda.bindings.runtime`` (cuda-python's CUDA runtime API), for tests only.

Implements the calls agent/inference/backends/cuda_mem.py makes, with cuda-python's conventions: every function
returns a tuple whose first item is a ``cudaError_t``. "Device memory" is host memory owned by this
module; a copy or kernel touching an address outside a live allocation fails with
``cudaErrorInvalidValue`` as a real device would. Work queued on a stream (copies and the fake
TensorRT's ``execute_async_v3``) runs only at ``cudaStreamSynchronize``, so a caller that forgets to
synchronise reads stale host buffers, as it would on a GPU.

Test knobs (module attributes): ``DEVICE_NAME``, ``MAJOR``, ``MINOR``, ``DEVICE_COUNT``.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "cudaDeviceProp",
    "cudaError_t",
    "cudaFree",
    "cudaGetDeviceCount",
    "cudaGetDeviceProperties",
    "cudaGetErrorString",
    "cudaMalloc",
    "cudaMemcpyAsync",
    "cudaMemcpyKind",
    "cudaStreamCreate",
    "cudaStreamDestroy",
    "cudaStreamSynchronize",
    "cudaStream_t",
]

DEVICE_NAME = "Orin (fake)"
MAJOR, MINOR = 8, 7
DEVICE_COUNT = 1


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400


_MESSAGES = {
    cudaError_t.cudaSuccess: b"no error",
    cudaError_t.cudaErrorInvalidValue: b"invalid argument",
    cudaError_t.cudaErrorMemoryAllocation: b"out of memory",
    cudaError_t.cudaErrorNoDevice: b"no CUDA-capable device is detected",
    cudaError_t.cudaErrorInvalidResourceHandle: b"invalid resource handle",
}


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


@dataclass
class cudaDeviceProp:  # noqa: N801 - only the fields the agent reads
    name: bytes
    major: int
    minor: int


class cudaStream_t:  # noqa: N801
    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        return self._handle

    def getPtr(self) -> int:  # noqa: N802 - cuda-python's spelling
        return self._handle


_allocations: dict[int, ctypes.Array] = {}
_streams: dict[int, list[Callable[[], None]]] = {}
_handles = itertools.count(0x5000)


def cudaGetErrorString(error: cudaError_t) -> tuple[cudaError_t, bytes]:  # noqa: N802
    return cudaError_t.cudaSuccess, _MESSAGES.get(error, b"unknown error")


def cudaGetDeviceCount() -> tuple[cudaError_t, int]:  # noqa: N802
    if DEVICE_COUNT == 0:
        return cudaError_t.cudaErrorNoDevice, 0
    return cudaError_t.cudaSuccess, DEVICE_COUNT


def cudaGetDeviceProperties(device: int) -> tuple[cudaError_t, cudaDeviceProp | None]:  # noqa: N802
    if not 0 <= device < DEVICE_COUNT:
        return cudaError_t.cudaErrorInvalidValue, None
    # Real props.name is the fixed char[256] array, NUL padded.
    return cudaError_t.cudaSuccess, cudaDeviceProp(DEVICE_NAME.encode().ljust(256, b"\0"), MAJOR, MINOR)


def cudaMalloc(size: int) -> tuple[cudaError_t, int]:  # noqa: N802
    if size <= 0:
        return cudaError_t.cudaErrorInvalidValue, 0
    buffer = ctypes.create_string_buffer(int(size))
    ptr = ctypes.addressof(buffer)
    _allocations[ptr] = buffer
    return cudaError_t.cudaSuccess, ptr


def cudaFree(ptr: int) -> tuple[cudaError_t]:  # noqa: N802
    if _allocations.pop(int(ptr), None) is None:
        return (cudaError_t.cudaErrorInvalidValue,)
    return (cudaError_t.cudaSuccess,)


def _in_device_memory(ptr: int, nbytes: int) -> bool:
    return any(base <= ptr and ptr + nbytes <= base + len(buf) for base, buf in _allocations.items())


def device_array(ptr: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Fake-only helper for the fake TensorRT: a NumPy view of device memory (ValueError when outside)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if not _in_device_memory(int(ptr), nbytes):
        raise ValueError(f"address {ptr:#x} (+{nbytes} bytes) is not device memory")
    raw = (ctypes.c_char * nbytes).from_address(int(ptr))
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def cudaStreamCreate() -> tuple[cudaError_t, cudaStream_t]:  # noqa: N802
    handle = next(_handles)
    _streams[handle] = []
    return cudaError_t.cudaSuccess, cudaStream_t(handle)


def enqueue(stream: int | cudaStream_t, work: Callable[[], None]) -> bool:
    """Fake-only helper: queue ``work`` on ``stream``; False for an unknown stream."""
    queue = _streams.get(int(stream))
    if queue is None:
        return False
    queue.append(work)
    return True


def cudaMemcpyAsync(dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: cudaStream_t):  # noqa: N802
    dst, src, count = int(dst), int(src), int(count)
    device_dst = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
    device_src = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
    if (device_dst and not _in_device_memory(dst, count)) or (
        device_src and not _in_device_memory(src, count)
    ):
        return (cudaError_t.cudaErrorInvalidValue,)
    if not enqueue(stream, lambda: ctypes.memmove(dst, src, count)):
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    return (cudaError_t.cudaSuccess,)


def cudaStreamSynchronize(stream: cudaStream_t) -> tuple[cudaError_t]:  # noqa: N802
    queue = _streams.get(int(stream))
    if queue is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    while queue:
        queue.pop(0)()
    return (cudaError_t.cudaSuccess,)


def cudaStreamDestroy(stream: cudaStream_t) -> tuple[cudaError_t]:  # noqa: N802
    if _streams.pop(int(stream), None) is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    return (cudaError_t.cudaSuccess,)
