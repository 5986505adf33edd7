"""What every inference backend is: a key, an availability check, a loaded model that infers a batch.

Backends follow Frigate's detector plugins: one self-contained module per runtime, its SDK imported
inside that module's functions, so a device without TensorRT or HailoRT still imports every other part
of the agent. The registry in :mod:`agent.inference.backends` maps each key to its class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from agent.core.errors import AgentError
from fieldtui.protocol import EngineFingerprint, RuntimeIdentity


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One model input or output. Dynamic dimensions are ``None`` or the exporter's symbolic name."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)


class Backend(ABC):
    """A model loaded by one runtime. ``infer`` may be called from any thread (the pipeline runs it on
    its own inference thread while the next frame is preprocessed)."""

    key: ClassVar[str]
    model_format: ClassVar[str]  # file format this backend loads: "onnx", "engine", "hef"
    # The settings this runtime actually has: a benchmark varies only these, and shows the others as
    # "n/a" rather than running identical configurations under different labels. TensorRT and HailoRT
    # have no intra-op thread pool to size; ONNX Runtime adds "threads".
    knobs: ClassVar[frozenset[str]] = frozenset({"batch"})

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]
    # (layout, class count) when the runtime's output is not a raw model tensor the Detector can tell
    # from its shape: Hailo's on-chip NMS hands over ("hailo_nms", nc). None: the Detector decides.
    layout_hint: tuple[str, int] | None = None

    @classmethod
    @abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(usable on this machine, the reason a technician sees either way)."""

    @classmethod
    def version(cls) -> str | None:
        """The runtime's version, or None when it is not installed."""
        return None

    @classmethod
    def providers(cls) -> list[str]:
        """Accelerators or execution providers this runtime would use here, best first."""
        return []

    @classmethod
    def identity(cls) -> RuntimeIdentity:
        """What this device offers the runtime: the fields a fresh engine's fingerprint would carry.
        Backends with an accelerator add its name and compute capability or firmware."""
        ok, reason = cls.available()
        return RuntimeIdentity(
            runtime=cls.key, available=ok, reason=reason, runtime_version=cls.version(), can_build=False
        )

    @classmethod
    def build_engine(
        cls,
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
        """Build an engine for this runtime from ``onnx_path`` and write it at ``out_path`` (the caller
        puts fingerprint.json beside it and renames the directory into place). Default: not possible."""
        raise AgentError(
            f"{cls.key} cannot build engines on this device: it runs the .{cls.model_format} model as pushed",
            status=422,
        )

    @abstractmethod
    def __init__(
        self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        """Load ``path``; raise ModelError (bad file) or BackendUnavailable (runtime missing)."""

    @abstractmethod
    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run one batch; outputs in the model's output order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's resources. Safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
