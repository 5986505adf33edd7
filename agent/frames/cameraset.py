"""A multi-camera pipeline that also answers as the one-camera :class:`~agent.frames.pipeline.Pipeline`.

The agent's service, routes and listeners were written for one camera (``/v1/status``,
``/v1/snapshot.jpg``, ``PUT /v1/pipeline/source``, the model store's swap, Trio forwarding). On an
agent configured with ``[[cameras]]`` they keep working and address the *first* camera, so existing
consoles and scripts do not break; ``/v1/cameras`` (agent/server/api/cameras.py) addresses each one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.frames.multicam import MultiPipeline
from agent.frames.thread_policy import ThreadTuner
from fieldtui.protocol import PipelineState, PipelineStatus, Sample, SourceStatus

__all__ = ["CameraSet", "camera_samples", "other_camera_findings"]

Listener = Callable[[np.ndarray, Any, dict], None]


class CameraSet(MultiPipeline):
    """:class:`MultiPipeline` plus the one-camera interface, addressing the first camera."""

    def __init__(self, detector: Any, cameras: list, *, threads: int | None = None, **kw: Any) -> None:
        super().__init__(detector, cameras, **kw)
        # one session for every camera: its threads measured on all cameras' frames (thread_policy.py)
        self.tuner = ThreadTuner(self, fixed=threads)
        self._wrapped: dict[Listener, Callable] = {}

    @property
    def first(self) -> str:
        return next(iter(self._specs))

    @property
    def running(self) -> bool:
        return not self._closed and any(t.is_alive() for t in self._threads)

    def start(self, *, retry: bool = False) -> None:  # cameras are always retried in the background
        if not self.running:
            super().start()
            self.tuner.schedule("model loaded")

    def stop(self, timeout: float = 5.0) -> None:
        self.tuner.stop()
        super().stop(timeout)

    def swap_detector(self, new: Any) -> Any:
        old = super().swap_detector(new)
        self.tuner.schedule("model swapped in")
        return old

    def camera_stats(self) -> list:
        """Every running camera's RollingStats (the thread policy counts all their frames)."""
        with self._cond:
            return [lane.stats for lane in self._lanes.values()]

    @property
    def live(self) -> bool:
        with self._cond:
            return any(lane.capture.live for lane in self._lanes.values())

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def state(self) -> PipelineState:
        if not self.running:
            return "stopped"
        lane = self._lanes.get(self.first)
        if lane is None:
            return "stopped"
        if lane.capture.lost:
            return "reconnecting"
        if lane.error:
            return "failed"
        return "running" if lane.latest is not None else "starting"

    @property
    def stats(self):  # noqa: ANN201 - RollingStats of the first camera, or None while it is disabled
        lane = self._lanes.get(self.first)
        return lane.stats if lane is not None else None

    def sample(self, name: str | None = None) -> Sample:
        return super().sample(name or self.first)

    def source_status(self, name: str | None = None) -> SourceStatus:
        return super().source_status(name or self.first)

    def latest(self, name: str | None = None) -> tuple[np.ndarray, Any] | None:
        return super().latest(name or self.first)

    def camera_error(self, name: str) -> str | None:
        lane = self.lane(name)
        return lane.error if lane is not None else None

    def status(self) -> PipelineStatus:
        return PipelineStatus(
            state=self.state,
            source=self.source_status(),
            model=getattr(self.detector, "info", None),
            sample=self.sample(),
            error=self.camera_error(self.first),
            started_at=self.started_at,
            threads=self.tuner.status(),
        )

    def set_source(self, uri: str) -> None:
        """``PUT /v1/pipeline/source``: the first camera's source (opened first, as in Pipeline)."""
        self.put_camera(dataclasses.replace(self.spec(self.first), source=uri))

    def add_listener(self, fn: Callable) -> None:
        """One-camera listeners ``fn(image, detections, names)`` hear the first camera only."""

        def first_only(camera: str, image: np.ndarray, dets: Any, names: dict) -> None:
            if camera == self.first:
                fn(image, dets, names)

        self._wrapped[fn] = first_only
        super().add_listener(first_only)

    def add_camera_listener(self, fn: Callable) -> None:
        super().add_listener(fn)

    def remove_listener(self, fn: Callable) -> None:
        super().remove_listener(self._wrapped.pop(fn, fn))


def other_camera_findings(pipeline: Any) -> list[tuple[str, str]]:
    """Health findings of every camera but the first (whose status the verdict already weighs), for
    agent/server/verdict.py's ``extra``: a camera down, or failing a camera-health check. None for a
    one-camera pipeline."""
    if not isinstance(pipeline, CameraSet) or not pipeline.running:
        return []
    found: list[tuple[str, str]] = []
    for spec in pipeline.cameras()[1:]:
        lane = pipeline._lanes.get(spec.name)
        if lane is None:
            continue  # disabled
        source = lane.capture.status()
        health = lane.health.current
        if not source.up:
            found.append(("degraded", f"camera {spec.name!r} down: {source.reason or 'no frames'}"))
        elif health is not None and not health.ok:
            found.append(("degraded", f"camera {spec.name!r}: {'; '.join(health.reasons)}"))
    return found


def camera_samples(pipeline: Any) -> list[Sample]:
    """Every enabled camera's sample (the SSE ``camera`` event); none for a one-camera pipeline."""
    if not isinstance(pipeline, CameraSet) or not pipeline.running:
        return []
    return [pipeline.sample(spec.name) for spec in pipeline.cameras() if spec.name in pipeline._lanes]
