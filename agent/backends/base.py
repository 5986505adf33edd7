"""What every inference backend is: a key, an availability check, a loaded model that infers a batch.

Backends follow Frigate's detector plugins: one self-contained module per runtime, its SDK imported
inside that module's functions, so a device without TensorRT or HailoRT still imports every other part
of the agent. The registry in :mod:`agent.backends` maps each key to its class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np


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

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]

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
