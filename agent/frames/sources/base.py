"""What every frame source is: open, read frames, close.

Reconnection with backoff is the capture thread's job (agent/frames/pipeline.py), not the source's: a live
source that loses its stream raises :class:`SourceLost` with the reason a technician should see, and the
pipeline reopens it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from agent.core.errors import SourceError

# One stall timeout for every live source: a stream silent this long is reported stalled (even while a
# read is still blocked) and reconnected. FFmpeg's own socket timeouts are set to it (agent/frames/sources/opencv.py).
STALL_S = 5.0


class SourceLost(SourceError):
    """A live stream stopped delivering frames; ``str()`` says why (never with credentials)."""


@dataclass(slots=True)
class Frame:
    image: np.ndarray  # BGR uint8, H x W x 3
    ts: float  # time.monotonic() at capture
    index: int  # 0-based frame counter since the source was opened


class Source(ABC):
    """A camera, stream, file or synthetic scene.

    ``live`` sources are read as fast as they deliver and the pipeline drops stale frames; non-live
    sources (files, image folders) apply back-pressure: every frame is processed.
    """

    kind: str = "source"
    live: bool = True

    def __init__(self, uri: str) -> None:
        self.uri = uri  # redacted form: safe for logs and the API

    @abstractmethod
    def open(self) -> None:
        """Open the device or stream; raise SourceError with what to do when it cannot be opened."""

    @abstractmethod
    def read(self) -> Frame | None:
        """Block until the next frame. ``None`` means the end of a finite source."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or stream. Safe to call twice."""

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) once known."""
        return None

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
