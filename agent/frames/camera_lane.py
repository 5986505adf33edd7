"""One camera of a multi-camera agent (agent/frames/multicam.py): its capture thread, preprocessing
thread, camera health, rolling stats and the one *ready* place its preprocessed frame waits in for the
shared inference thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from agent.core.cameras import CameraSpec
from agent.frames.capture import Capture, Captured, EndOfSource
from agent.frames.handoff import Closed, Slot
from agent.frames.health import HealthMonitor
from agent.frames.pipeline import HEALTH_EVERY, sample_of
from agent.frames.sources import redact
from agent.frames.stats import RollingStats
from fieldtui.protocol import Sample, StageTimes

__all__ = ["CameraLane", "Work", "empty_sample"]


class Work:
    __slots__ = ("lane", "item", "detector", "tensor", "lb", "outputs", "pre_s", "infer_s", "batch")

    def __init__(self, lane: CameraLane, item: Captured, detector: Any) -> None:
        self.lane, self.item, self.detector = lane, item, detector
        self.tensor = self.lb = self.outputs = None
        self.pre_s = self.infer_s = 0.0
        self.batch = 1


class CameraLane:
    """One camera: its capture thread, preprocess thread, health, stats and ready frame."""

    def __init__(self, spec: CameraSpec, owner: Any) -> None:
        # owner: the MultiPipeline (agent/frames/multicam.py) this camera runs in
        self.spec, self.name, self.owner = spec, spec.name, owner
        self.stats = RollingStats()
        self.capture = Capture(
            spec.source, stats=self.stats, metrics=owner.camera_metrics.for_capture(spec.name)
        )
        self.health = HealthMonitor(every=HEALTH_EVERY)
        self.slot = Slot()
        self.ready: Work | None = None
        self.closed = True
        self.latest: tuple[np.ndarray, Any] | None = None
        self.error: str | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.capture.open(retry=True)  # SourceError only for a form that can never open
        self.closed = False
        self.slot = Slot()
        self.thread = threading.Thread(
            target=self._preprocess_loop, name=f"fieldtui-pre-{self.name}", daemon=True
        )
        self.thread.start()
        self.capture.start(self.slot)

    def stop(self, timeout: float = 5.0) -> None:
        with self.owner._cond:
            self.closed, self.ready = True, None
            self.owner._cond.notify_all()
        self.slot.close()
        self.capture.stop(timeout)
        if self.thread is not None:
            self.thread.join(timeout)

    def _preprocess_loop(self) -> None:
        gen = 0
        cond = self.owner._cond
        try:
            while True:
                item = self.slot.get()
                if isinstance(item, EndOfSource):
                    continue  # a file camera stays at its end until its source is changed
                if item.source_gen != gen:
                    gen = item.source_gen
                    self.health = HealthMonitor(live=self.capture.live, every=HEALTH_EVERY)
                work = Work(self, item, self.owner.detector)
                try:
                    t0 = time.perf_counter()
                    work.tensor, work.lb = work.detector.preprocess(item.frame.image)
                    work.pre_s = time.perf_counter() - t0
                    self.health.update(item.frame.image, item.frame.ts)
                except Exception as err:
                    self.error = f"preprocess failed: {type(err).__name__}: {redact(str(err))}"
                    continue
                with cond:
                    while self.ready is not None and not self.closed:
                        cond.wait()
                    if self.closed:
                        return
                    self.ready = work
                    cond.notify_all()
        except Closed:
            return

    def sample(self) -> Sample:
        return sample_of(self.stats, self.health.current, self.name)


def empty_sample(name: str) -> Sample:
    return Sample(
        ts=time.time(),
        fps=0.0,
        latency_p50_ms=0.0,
        latency_p95_ms=0.0,
        stages_ms=StageTimes(),
        confidence_avg=None,
        drop_rate=0.0,
        camera_name=name,
    )
