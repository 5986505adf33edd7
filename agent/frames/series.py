"""Latency, FPS and confidence over the day: a bounded ring of per-minute points, per camera.

The agent keeps no other time series (Prometheus does, where one scrapes it), yet a visit report wants
"latency and confidence over the visit" from the device itself. So a sampler thread reads the pipeline's
rolling window (agent/frames/stats.py, the last 2 s) every :data:`READ_EVERY_S` and folds the readings of
each minute into one point: p50 the median of the windows' p50, p95 the highest window p95, FPS and
confidence their means. Readings without frames (a stopped pipeline, a camera down) are left out, so
such a minute has no point rather than a zero.

Memory is fixed: ``capacity`` points per camera (1440 = 24 h at one a minute), at most
:data:`MAX_CAMERAS` cameras. The minute's length comes from ``[series] minute_s`` in config.toml (tests
shorten it); nothing here touches the frame path.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.core.errors import AgentError
from fieldtui.protocol import Sample, first_error
from fieldtui.protocol.series import SeriesPage, SeriesPoint

log = logging.getLogger("fieldtui.agent.series")

READ_EVERY_S = 2.0  # the rolling window's length: each reading covers new frames
MAX_CAMERAS = 32


class SeriesSettings(BaseModel):
    """``[series]`` in config.toml."""

    model_config = ConfigDict(extra="forbid", strict=True)

    minute_s: float = Field(default=60.0, ge=0.2, le=3600.0, description="one point per this many seconds")
    capacity: int = Field(default=1440, ge=10, le=10080, description="points kept per camera")

    @classmethod
    def of(cls, section: dict[str, Any] | None) -> SeriesSettings:
        try:
            return cls.model_validate(section or {})
        except ValidationError as err:
            raise AgentError(f"config.toml [series] {first_error(err)}") from None


@dataclass
class _Minute:
    start: float
    fps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)
    conf: list[float] = field(default_factory=list)

    def point(self, camera: str) -> SeriesPoint:
        return SeriesPoint(
            ts=self.start,
            camera=camera,
            readings=len(self.fps),
            fps=round(statistics.fmean(self.fps), 2),
            latency_p50_ms=round(statistics.median(self.p50), 2),
            latency_p95_ms=round(max(self.p95), 2),
            confidence_avg=round(statistics.fmean(self.conf), 4) if self.conf else None,
        )


class MinuteSeries:
    """The rings and the sampler thread. ``read()`` returns the cameras' current samples, each with its
    ``camera_name``; :meth:`add` folds one reading in (the thread calls it, tests may too)."""

    def __init__(
        self,
        read: Callable[[], list[Sample]],
        settings: SeriesSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or SeriesSettings()
        self._read = read
        self._clock = clock
        self._lock = threading.Lock()
        self._rings: dict[str, deque[SeriesPoint]] = {}
        self._open: dict[str, _Minute] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def every_s(self) -> float:
        return min(READ_EVERY_S, self.settings.minute_s / 4)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="series", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                now = self._clock()
                for sample in self._read():
                    self.add(sample, now)
                self.roll(now)
            except Exception:  # noqa: BLE001 - the series must outlive one bad reading
                log.exception("series reading failed")

    def add(self, sample: Sample, now: float) -> None:
        """Fold one reading into its camera's open minute (closing the previous minute first)."""
        if sample.fps <= 0:
            return
        name = sample.camera_name or "camera"
        start = now - now % self.settings.minute_s
        with self._lock:
            minute = self._open.get(name)
            if minute is not None and minute.start != start:
                self._close(name, minute)
                minute = None
            if minute is None:
                if name not in self._rings and len(self._rings) >= MAX_CAMERAS:
                    return
                minute = self._open[name] = _Minute(start)
            minute.fps.append(sample.fps)
            minute.p50.append(sample.latency_p50_ms)
            minute.p95.append(sample.latency_p95_ms)
            if sample.confidence_avg is not None:
                minute.conf.append(sample.confidence_avg)

    def roll(self, now: float) -> None:
        """Close every open minute that has ended (a camera that stopped sending closes too)."""
        with self._lock:
            for name, minute in list(self._open.items()):
                if now >= minute.start + self.settings.minute_s:
                    self._close(name, minute)

    def _close(self, name: str, minute: _Minute) -> None:
        ring = self._rings.setdefault(name, deque(maxlen=self.settings.capacity))
        ring.append(minute.point(name))
        del self._open[name]

    def page(self, since: float | None = None, camera: str | None = None) -> SeriesPage:
        """Closed minutes, oldest first, from ``since`` (Unix time) and of ``camera`` when given."""
        with self._lock:
            points = [
                p
                for name, ring in self._rings.items()
                if camera is None or name == camera
                for p in ring
                if since is None or p.ts + self.settings.minute_s > since
            ]
        points.sort(key=lambda p: (p.ts, p.camera))
        return SeriesPage(minute_s=self.settings.minute_s, capacity=self.settings.capacity, points=points)


def attach_series(service: Any) -> MinuteSeries:
    """The series of an :class:`~agent.server.service.AgentService`, read from its pipeline."""
    from agent.frames.cameraset import camera_samples

    pipeline = service.pipeline

    def read() -> list[Sample]:
        many = camera_samples(pipeline)
        if many:
            return many
        if getattr(pipeline, "state", "running") not in ("running", "starting"):
            return []
        sample = pipeline.sample()
        return [sample.model_copy(update={"camera_name": sample.camera_name or service.config.camera})]

    try:
        settings = SeriesSettings.of(service.config.sections.get("series"))
    except AgentError as err:  # a typo in config.toml must not keep the agent from serving
        log.error("%s; keeping one point a minute for 24 hours", err)
        settings = SeriesSettings()
    series = MinuteSeries(read, settings)
    series.start()
    return series
