"""Rolling window (about 2 s) of per-frame figures: fps, latency percentiles, stages, confidence, drops.

Cheap on purpose: a frame adds one small record to a deque, and the expensive part (percentiles) runs
only when somebody asks for a summary (the SSE sample at ~2 Hz, a scrape, the status line).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fieldtui.protocol import StageTimes

WINDOW_S = 2.0


@dataclass(slots=True)
class _FrameRecord:
    ts: float
    capture: float
    preprocess: float
    infer: float
    postprocess: float
    conf_sum: float
    conf_n: int
    counts: Mapping[str, int]


@dataclass(slots=True)
class WindowSummary:
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    stages_ms: StageTimes
    confidence_avg: float | None
    detections: dict[str, int] = field(default_factory=dict)
    drop_rate: float = 0.0
    frames_total: int = 0
    dropped_total: int = 0


class RollingStats:
    """Thread-safe: frames arrive from the postprocess thread, captures from the capture thread."""

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._frames: deque[_FrameRecord] = deque()
        self._captures: deque[tuple[float, bool]] = deque()
        self.frames_total = 0
        self.dropped_total = 0
        self._since = time.monotonic()

    def restart_window(self) -> None:
        """Start the window afresh (new source): old figures no longer describe what we see."""
        with self._lock:
            self._frames.clear()
            self._captures.clear()
            self._since = time.monotonic()

    def add_capture(self, ts: float, dropped_previous: bool) -> None:
        """A frame was captured; ``dropped_previous`` when it replaced one nobody had taken."""
        with self._lock:
            self._captures.append((ts, dropped_previous))
            if dropped_previous:
                self.dropped_total += 1
            self._trim(ts)

    def add_frame(
        self,
        ts: float,
        *,
        capture: float,
        preprocess: float,
        infer: float,
        postprocess: float,
        scores: np.ndarray,
        counts: Mapping[str, int],
    ) -> None:
        rec = _FrameRecord(
            ts, capture, preprocess, infer, postprocess, float(scores.sum()), int(scores.size), counts
        )
        with self._lock:
            self._frames.append(rec)
            self.frames_total += 1
            self._trim(ts)

    def _trim(self, now: float) -> None:
        cutoff = now - self.window
        frames, captures = self._frames, self._captures
        while frames and frames[0].ts < cutoff:
            frames.popleft()
        while captures and captures[0][0] < cutoff:
            captures.popleft()

    def summary(self, now: float | None = None) -> WindowSummary:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            frames = list(self._frames)
            captures = list(self._captures)
            totals = (self.frames_total, self.dropped_total)
            span = min(self.window, now - self._since)
        n = len(frames)
        captured = len(captures)
        dropped = sum(1 for _, d in captures if d)
        drop_rate = dropped / captured if captured else 0.0
        if n == 0:
            return WindowSummary(0.0, 0.0, 0.0, StageTimes(), None, {}, drop_rate, *totals)
        stages = np.array(
            [(r.capture, r.preprocess, r.infer, r.postprocess) for r in frames], dtype=np.float64
        )
        latency = stages[:, 1:].sum(axis=1) * 1000.0
        p50, p95 = np.percentile(latency, (50, 95))
        mean = stages.mean(axis=0) * 1000.0
        conf_n = sum(r.conf_n for r in frames)
        conf = sum(r.conf_sum for r in frames) / conf_n if conf_n else None
        counts: dict[str, int] = {}
        for r in frames:
            for name, c in r.counts.items():
                counts[name] = counts.get(name, 0) + c
        return WindowSummary(
            fps=n / span if span > 0 else 0.0,
            latency_p50_ms=float(p50),
            latency_p95_ms=float(p95),
            stages_ms=StageTimes(
                capture=float(mean[0]),
                preprocess=float(mean[1]),
                infer=float(mean[2]),
                postprocess=float(mean[3]),
            ),
            confidence_avg=conf,
            detections=counts,
            drop_rate=drop_rate,
            frames_total=totals[0],
            dropped_total=totals[1],
        )
