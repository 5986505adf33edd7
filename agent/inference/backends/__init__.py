"""The backend registry: a key per runtime, the class that serves it, and ``doctor``.

Importing this package imports no vendor SDK: each backend module imports its runtime inside its own
functions (Frigate's detector plugin layout), so ``doctor`` can explain a missing one instead of crashing.
"""

from __future__ import annotations

from agent.core.errors import BackendUnavailable
from agent.inference.backends.base import Backend, TensorSpec
from agent.inference.backends.hailo import HailoBackend
from agent.inference.backends.litert import LiteRtBackend
from agent.inference.backends.onnxruntime import OnnxRuntimeBackend
from agent.inference.backends.tensorrt import TensorRtBackend
from fieldtui.protocol import BackendInfo

BACKENDS: dict[str, type[Backend]] = {
    OnnxRuntimeBackend.key: OnnxRuntimeBackend,
    TensorRtBackend.key: TensorRtBackend,
    HailoBackend.key: HailoBackend,
    LiteRtBackend.key: LiteRtBackend,
}

__all__ = ["BACKENDS", "Backend", "TensorSpec", "doctor", "get_backend", "known_keys"]


def known_keys() -> list[str]:
    return list(BACKENDS)


def get_backend(key: str) -> type[Backend]:
    """The backend class for ``key``; BackendUnavailable (with the choices) when there is none."""
    if key in BACKENDS:
        return BACKENDS[key]
    raise BackendUnavailable(f"unknown backend {key!r}: choose one of {', '.join(known_keys())}")


def doctor() -> list[BackendInfo]:
    """Every known backend, whether it can run here, and why (or what to install)."""
    infos = []
    for key, cls in BACKENDS.items():
        ok, reason = cls.available()
        infos.append(
            BackendInfo(
                key=key, available=ok, reason=reason, version=cls.version(), providers=cls.providers()
            )
        )
    return infos
