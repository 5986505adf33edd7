"""The dashboard's memory of a device's samples: one ring buffer per charted series.

Every sample is recorded as it arrives (cheap appends), even when the screen renders only the newest of
a burst: the charts stay complete while a slow terminal skips frames.
"""

from __future__ import annotations

from collections import deque

from fieldtui.protocol import Sample

HISTORY = 600  # samples kept per series: 4 minutes at the agent's ~2.5 Hz, wider than any terminal


class Telemetry:
    def __init__(self, history: int = HISTORY) -> None:
        self.latest: Sample | None = None
        self.count = 0
        self.p50: deque[float] = deque(maxlen=history)
        self.p95: deque[float] = deque(maxlen=history)
        self.fps: deque[float] = deque(maxlen=history)
        self.confidence: deque[float | None] = deque(maxlen=history)
        self.drop_rate: deque[float] = deque(maxlen=history)

    def add(self, sample: Sample) -> None:
        self.latest = sample
        self.count += 1
        self.p50.append(sample.latency_p50_ms)
        self.p95.append(sample.latency_p95_ms)
        self.fps.append(sample.fps)
        self.confidence.append(sample.confidence_avg)
        self.drop_rate.append(sample.drop_rate)

    @staticmethod
    def tail(series: deque, n: int) -> list:
        """The newest ``n`` values, oldest first (without copying the whole buffer)."""
        n = min(n, len(series))
        return [series[i] for i in range(len(series) - n, len(series))]
