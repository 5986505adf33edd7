"""Per-camera Prometheus series of a multi-camera agent, on the agent's own registry.

The seed's four names (agent/frames/metrics.py) keep their meaning and their labels: the Grafana
dashboard and the alert rules (packaging/) match them without a ``camera`` label, and a new label would
split every series they sum. Per camera there are ``fieldtui_agent_camera_*`` series with a ``camera``
label instead, plus ``fieldtui_agent_frame_latency_seconds{camera}``: capture to result of one frame,
since ``inference_latency_seconds`` times an inference call that may serve several cameras at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.frames.metrics import LATENCY_BUCKETS, AgentMetrics

log = logging.getLogger("fieldtui.agent.metrics")

FRAME_LATENCY_BUCKETS = (*LATENCY_BUCKETS[:-1], 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)


@dataclass(slots=True)
class CameraState:
    name: str
    enabled: bool
    fps: float
    drop_rate: float
    confidence_avg: float | None
    source_up: bool
    camera_ok: bool | None


class _CameraCollector(Collector):
    def __init__(self) -> None:
        self.provider: Callable[[], list[CameraState]] | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        if self.provider is None:
            return
        try:
            states = self.provider()
        except Exception:  # a scrape must never take the agent down
            log.exception("reading camera state for /metrics failed")
            return
        fams = {
            "fps": GaugeMetricFamily(
                "fieldtui_agent_camera_fps", "frames processed per second, per camera", labels=["camera"]
            ),
            "drop": GaugeMetricFamily(
                "fieldtui_agent_camera_drop_rate", "dropped / captured frames, per camera", labels=["camera"]
            ),
            "conf": GaugeMetricFamily(
                "fieldtui_agent_camera_confidence_avg",
                "mean detection confidence over ~2 s, per camera (absent while nothing is detected)",
                labels=["camera"],
            ),
            "up": GaugeMetricFamily(
                "fieldtui_agent_camera_source_up", "1 while the camera delivers frames", labels=["camera"]
            ),
            "ok": GaugeMetricFamily(
                "fieldtui_agent_camera_health_ok", "1 when no camera-health check fails", labels=["camera"]
            ),
            "enabled": GaugeMetricFamily(
                "fieldtui_agent_camera_enabled", "1 when the camera is enabled", labels=["camera"]
            ),
        }
        for s in states:
            fams["enabled"].add_metric([s.name], float(s.enabled))
            fams["up"].add_metric([s.name], float(s.source_up))
            if not s.enabled:
                continue
            fams["fps"].add_metric([s.name], s.fps)
            fams["drop"].add_metric([s.name], s.drop_rate)
            if s.confidence_avg is not None:
                fams["conf"].add_metric([s.name], s.confidence_avg)
            if s.camera_ok is not None:
                fams["ok"].add_metric([s.name], float(s.camera_ok))
        yield from fams.values()


class CameraMetrics:
    """Per-camera counters and histograms; per-camera state is read at scrape time."""

    def __init__(self, agent: AgentMetrics) -> None:
        self.agent = agent
        r: CollectorRegistry = agent.registry
        self.frames = Counter("fieldtui_agent_camera_frames", "frames processed", ["camera"], registry=r)
        self.dropped = Counter(
            "fieldtui_agent_camera_frames_dropped",
            "live frames replaced before processing",
            ["camera"],
            registry=r,
        )
        self.reconnects = Counter(
            "fieldtui_agent_camera_source_reconnects", "times a lost camera came back", ["camera"], registry=r
        )
        self.detections = Counter(
            "fieldtui_agent_camera_detections",
            "detections by camera and class",
            ["camera", "class_name"],
            registry=r,
        )
        self.frame_latency = Histogram(
            "fieldtui_agent_frame_latency_seconds",
            "capture to result of one frame, per camera (includes waiting for a batch)",
            ["camera"],
            buckets=FRAME_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fieldtui_agent_inference_batch_size",
            "frames per inference call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._collector = _CameraCollector()
        r.register(self._collector)

    def set_state_provider(self, provider: Callable[[], list[CameraState]] | None) -> None:
        self._collector.provider = provider

    def for_capture(self, camera: str) -> _CaptureMetrics:
        """What one camera's Capture counts into: the agent totals and this camera's series."""
        return _CaptureMetrics(self, camera)

    def forget(self, camera: str) -> None:
        """Drop a removed camera's series, so a scrape does not show cameras that are gone."""
        for metric in (self.frames, self.dropped, self.reconnects, self.frame_latency):
            with contextlib.suppress(KeyError):
                metric.remove(camera)
        for labels in list(self.detections._metrics):  # noqa: SLF001 - prometheus_client has no prefix removal
            if labels[0] == camera:
                self.detections.remove(*labels)


class _Inc:
    def __init__(self, *counters: Counter) -> None:
        self._counters = counters

    def inc(self, n: float = 1) -> None:
        for c in self._counters:
            c.inc(n)


class _CaptureMetrics:
    """The two calls agent/frames/capture.py makes on its metrics, counted per camera as well."""

    def __init__(self, cm: CameraMetrics, camera: str) -> None:
        self._agent = cm.agent
        self._dropped = cm.dropped.labels(camera=camera)
        self.source_reconnects = _Inc(cm.agent.source_reconnects, cm.reconnects.labels(camera=camera))

    def count_dropped(self, n: int = 1) -> None:
        self._agent.count_dropped(n)
        self._dropped.inc(n)
