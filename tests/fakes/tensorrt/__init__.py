"""FAKE ``tensorrt`` (TensorRT 10 Python API), for tests only: not NVIDIA's code, no GPU involved.

It implements the documented surface agent/inference/backends/tensorrt*.py calls, with TensorRT's names and
conventions: ``Builder`` / ``create_network`` / ``OnnxParser`` / ``IBuilderConfig``
(``set_memory_pool_limit``, ``set_flag``, timing caches, ``progress_monitor``) /
``build_serialized_network`` (None on failure or when ``IProgressMonitor.step_complete`` returns False),
``Runtime.deserialize_cuda_engine`` (None plus a logged error for a plan from another TensorRT version or
GPU), ``ICudaEngine`` tensor queries and ``IExecutionContext.execute_async_v3``.

What is fake: a "plan" is a JSON header plus the ONNX model's bytes, and executing it runs that ONNX
model with ONNX Runtime on the fake CUDA "device memory" (tests/fakes/cuda), queued on the stream.
FP16 engines round inputs and outputs through float16; INT8 engines run the QDQ model as given. So the
backend's real data path (tensor names, shapes, copies, execute_async_v3, stream sync) gives real
detections.

Test knobs and records (fake-only): ``__version__``, ``DESERIALIZE_CALLS`` (count),
``BUILDS`` (one dict per build: flags, workspace, timing-cache hits).
"""

from __future__ import annotations

from typing import Any

__version__ = "10.3.0.26"
DESERIALIZE_CALLS = 0
BUILDS: list[dict[str, Any]] = []

from tensorrt._builder import (  # noqa: E402 - the knobs above exist before the submodules read them
    Builder,
    IBuilderConfig,
    INetworkDefinition,
    IOptimizationProfile,
    ITensor,
    ITimingCache,
    OnnxParser,
    ParserError,
)
from tensorrt._runtime import ICudaEngine, IExecutionContext, Runtime  # noqa: E402
from tensorrt._types import (  # noqa: E402
    BuilderFlag,
    DataType,
    Dims,
    ErrorCode,
    IHostMemory,
    ILogger,
    IProgressMonitor,
    Logger,
    MemoryPoolType,
    NetworkDefinitionCreationFlag,
    TensorIOMode,
    nptype,
)

__all__ = [
    "BuilderFlag", "Builder", "DataType", "Dims", "ErrorCode", "IBuilderConfig", "ICudaEngine",
    "IExecutionContext", "IHostMemory", "ILogger", "INetworkDefinition", "IOptimizationProfile",
    "IProgressMonitor", "ITensor", "ITimingCache", "Logger", "MemoryPoolType", "NetworkDefinitionCreationFlag",
    "OnnxParser", "ParserError", "Runtime", "TensorIOMode", "nptype",
]  # fmt: skip
