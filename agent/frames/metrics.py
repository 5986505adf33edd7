"""Prometheus metrics of the frame path.

Four names are fixed because dashboards and alert rules already use them: ``inference_latency_seconds``,
``detections_total{class_name}``, ``frame_drop_rate`` and ``model_confidence_avg``. Everything else is
``fieldtui_agent_*``, with labels rather than ids in names.

Per-frame events (latency, detections, frames, drops) are counted as they happen. State (fps, drop rate,
rolling confidence, source up, camera health, the active model) is read at scrape time from the pipeline
through a custom collector, so a stalled camera shows up as fps 0 rather than the last value seen.

Each :class:`AgentMetrics` owns its registry (tests make many); ``AgentMetrics.registry`` is what
``/metrics`` and ``start_http_server`` expose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fieldtui.protocol import CameraHealth, ModelInfo

log = logging.getLogger("fieldtui.agent.metrics")

# From 5 ms (a small model on a GPU) to 2 s (a big one on a Pi CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)
STAGES = ("capture", "preprocess", "infer", "postprocess")


@dataclass(slots=True)
class StateSnapshot:
    """What the state collector reads from the pipeline at scrape time."""

    fps: float
    drop_rate: float
    confidence_avg: float | None
    source_up: bool
    camera: CameraHealth | None = None
    model: ModelInfo | None = None


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.provider: Callable[[], StateSnapshot | None] | None = None

    def describe(self) -> Iterable[Metric]:
        # Declared so registration succeeds before a pipeline is attached; collect() fills them in.
        return []

    def collect(self) -> Iterable[Metric]:
        if self.provider is None:
            return
        try:
            snap = self.provider()
        except Exception:  # a scrape must never take the agent down
            log.exception("reading pipeline state for /metrics failed")
            return
        if snap is None:
            return
        yield _gauge("frame_drop_rate", "dropped / captured frames over the last ~2 s", snap.drop_rate)
        if snap.confidence_avg is not None:
            yield _gauge(
                "model_confidence_avg",
                "mean detection confidence over the last ~2 s (absent while nothing is detected)",
                snap.confidence_avg,
            )
        yield _gauge("fieldtui_agent_fps", "frames processed per second over the last ~2 s", snap.fps)
        yield _gauge("fieldtui_agent_source_up", "1 while the source delivers frames", float(snap.source_up))
        cam = snap.camera
        if cam is not None:
            yield _gauge("fieldtui_agent_camera_brightness", "mean luma of the frame, 0-255", cam.brightness)
            yield _gauge("fieldtui_agent_camera_sharpness", "variance of the Laplacian", cam.sharpness)
            if cam.sharpness_ratio is not None:
                yield _gauge(
                    "fieldtui_agent_camera_sharpness_ratio",
                    "sharpness against this camera's own baseline (1 = as usual)",
                    cam.sharpness_ratio,
                )
            yield _gauge("fieldtui_agent_camera_ok", "1 when no camera-health check fails", float(cam.ok))
            yield _gauge(
                "fieldtui_agent_camera_frozen", "1 when the picture stopped changing", float(cam.frozen)
            )
            yield _gauge("fieldtui_agent_camera_covered", "1 when the lens looks covered", float(cam.covered))
        if snap.model is not None:
            m = snap.model
            info = GaugeMetricFamily(
                "fieldtui_agent_model_info",
                "the active model (value always 1)",
                labels=["version", "backend", "layout", "sha256"],
            )
            info.add_metric([m.version or "", m.backend, m.layout, m.sha256 or ""], 1.0)
            yield info


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class AgentMetrics:
    """The agent's metrics, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.inference_latency = Histogram(
            "inference_latency_seconds",
            "per-frame latency: preprocess + inference + postprocess",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.detections = Counter("detections_total", "detections by class", ["class_name"], registry=r)
        self.stage_seconds = Histogram(
            "fieldtui_agent_stage_seconds",
            "time per frame in each stage (capture includes waiting for the camera)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.frames = Counter("fieldtui_agent_frames", "frames processed", registry=r)
        self.frames_dropped = Counter(
            "fieldtui_agent_frames_dropped", "live frames replaced before they were processed", registry=r
        )
        # a model fault no health check on a few frames need catch (NaN only on dark frames, say)
        self.frames_nonfinite = Counter(
            "fieldtui_agent_frames_nonfinite",
            "frames whose model outputs held NaN or Inf (counted by agent/inference/nonfinite.py)",
            registry=r,
        )
        self.source_reconnects = Counter(
            "fieldtui_agent_source_reconnects", "times a lost source came back", registry=r
        )
        # Children resolved once: .labels() takes a lock and a dict lookup we need not pay per frame.
        self._stage = {s: self.stage_seconds.labels(stage=s) for s in STAGES}
        self._classes: dict[str, Counter] = {}
        self._state = _StateCollector()
        r.register(self._state)
        # 1 = the engine's fingerprint no longer matches this device (packaging/prometheus alerts on it)
        self.engine_stale = Gauge(
            "fieldtui_agent_engine_stale",
            "1 when a stored engine must be rebuilt",
            ["key", "runtime"],
            registry=r,
        )

    def set_engines(self, engines: Iterable[tuple[str, str, bool]]) -> None:
        """The stale flag of every stored engine as (key, runtime, stale); engines gone are dropped."""
        self.engine_stale.clear()
        for key, runtime, stale in engines:
            self.engine_stale.labels(key=key, runtime=runtime).set(float(stale))

    def set_state_provider(self, provider: Callable[[], StateSnapshot | None] | None) -> None:
        """Where scrape-time state comes from (the pipeline registers itself)."""
        self._state.provider = provider

    def declare_classes(self, names: Iterable[str]) -> None:
        """Create the ``detections_total`` series at 0 so rates work from the first detection."""
        for name in names:
            self._class(name)

    def _class(self, name: str) -> Counter:
        child = self._classes.get(name)
        if child is None:
            child = self._classes[name] = self.detections.labels(class_name=name)
        return child

    def observe_frame(
        self,
        *,
        capture: float,
        preprocess: float,
        infer: float,
        postprocess: float,
        counts: Mapping[str, int],
    ) -> None:
        """One processed frame: stage times in seconds and detections per class name."""
        self.inference_latency.observe(preprocess + infer + postprocess)
        stage = self._stage
        stage["capture"].observe(capture)
        stage["preprocess"].observe(preprocess)
        stage["infer"].observe(infer)
        stage["postprocess"].observe(postprocess)
        self.frames.inc()
        for name, n in counts.items():
            self._class(name).inc(n)

    def count_dropped(self, n: int = 1) -> None:
        self.frames_dropped.inc(n)
