"""FAKE TensorRT enums, logger, progress monitor and small value types (tests only; see the package
docstring)."""

from __future__ import annotations

import enum

import numpy as np

# --- enums ------------------------------------------------------------------------------------


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}
ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
               2: DataType.UINT8, 7: DataType.INT64}  # fmt: skip


def nptype(trt_type: DataType) -> type:
    """The NumPy type of a TensorRT DataType (``tensorrt.nptype``)."""
    return _NP[DataType(trt_type)]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0  # deprecated in TensorRT 10: networks are always explicit batch; ignored
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 4
    TF32 = 6
    VERSION_COMPATIBLE = 14
    EXCLUDE_LEAN_RUNTIME = 15


class ErrorCode(enum.IntEnum):
    SUCCESS = 0
    INTERNAL_ERROR = 1
    MEM_ALLOC_FAILED = 2
    MODEL_DESERIALIZE_FAILED = 3
    INVALID_VALUE = 4
    INVALID_GRAPH = 5
    INVALID_NODE = 6
    UNSUPPORTED_GRAPH = 7
    UNSUPPORTED_NODE = 8


# --- logging and progress ---------------------------------------------------------------------


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        raise NotImplementedError


class Logger(ILogger):
    INTERNAL_ERROR, ERROR, WARNING = (
        ILogger.Severity.INTERNAL_ERROR,
        ILogger.Severity.ERROR,
        ILogger.Severity.WARNING,
    )
    INFO, VERBOSE = ILogger.Severity.INFO, ILogger.Severity.VERBOSE

    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[TRT] [{severity.name[0]}] {msg}")


class IProgressMonitor:
    """Application-implemented progress reporting; ``step_complete`` returning False cancels the build."""

    def __init__(self) -> None:
        pass

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        raise NotImplementedError

    def step_complete(self, phase_name: str, step: int) -> bool:
        raise NotImplementedError

    def phase_finish(self, phase_name: str) -> None:
        raise NotImplementedError


class Dims(tuple):
    """Shape of a tensor; -1 marks a dynamic dimension."""


class IHostMemory(bytes):
    """Serialised data (plan, timing cache); supports the buffer protocol like the real one."""

    @property
    def nbytes(self) -> int:
        return len(self)
