"""Prometheus metrics: the four dashboard names exactly, labelled fieldtui_agent_* series, scrape-time state."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.frames.metrics import AgentMetrics, StateSnapshot
from fieldtui.protocol import CameraHealth, ModelInfo

MODEL = ModelInfo(
    version="v3",
    path="models/v3/model.onnx",
    sha256="ab" * 32,
    backend="onnxruntime",
    input_shape=[1, 3, 320, 320],
    input_dtype="float32",
    layout="yolov8",
    names={0: "circle", 1: "square"},
)


def families(m: AgentMetrics) -> dict[str, object]:
    text = generate_latest(m.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_four_dashboard_names_exactly() -> None:
    m = AgentMetrics()
    m.set_state_provider(lambda: StateSnapshot(fps=30.0, drop_rate=0.1, confidence_avg=0.8, source_up=True))
    m.observe_frame(capture=0.03, preprocess=0.002, infer=0.01, postprocess=0.001, counts={"circle": 2})
    text = generate_latest(m.registry).decode()
    fams = families(m)
    assert fams["inference_latency_seconds"].type == "histogram"
    assert fams["detections"].type == "counter"  # exposed as detections_total
    assert 'detections_total{class_name="circle"} 2.0' in text
    assert fams["frame_drop_rate"].type == "gauge"
    assert fams["model_confidence_avg"].type == "gauge"
    assert "\nframe_drop_rate 0.1\n" in text
    assert "\nmodel_confidence_avg 0.8\n" in text


def test_latency_histogram_buckets_5ms_to_over_1s() -> None:
    m = AgentMetrics()
    m.observe_frame(capture=0.0, preprocess=0.001, infer=0.004, postprocess=0.001, counts={})
    reg = m.registry
    uppers = sorted(
        float(s.labels["le"])
        for f in text_string_to_metric_families(generate_latest(reg).decode())
        if f.name == "inference_latency_seconds"
        for s in f.samples
        if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
    )
    assert uppers[0] == 0.005 and uppers[-1] >= 1.0
    # Latency is preprocess + infer + postprocess: 6 ms lands above the 5 ms bucket.
    assert reg.get_sample_value("inference_latency_seconds_bucket", {"le": "0.005"}) == 0
    assert reg.get_sample_value("inference_latency_seconds_bucket", {"le": "0.01"}) == 1
    assert reg.get_sample_value("inference_latency_seconds_sum") == pytest.approx(0.006)


def test_agent_series_use_labels_not_names() -> None:
    m = AgentMetrics()
    m.declare_classes(["circle", "square"])
    m.observe_frame(capture=0.03, preprocess=0.002, infer=0.01, postprocess=0.001, counts={"square": 1})
    m.count_dropped()
    m.count_dropped()
    reg = m.registry
    assert reg.get_sample_value("detections_total", {"class_name": "circle"}) == 0  # declared up front
    assert reg.get_sample_value("detections_total", {"class_name": "square"}) == 1
    assert reg.get_sample_value("fieldtui_agent_stage_seconds_count", {"stage": "infer"}) == 1
    assert reg.get_sample_value("fieldtui_agent_stage_seconds_sum", {"stage": "capture"}) == pytest.approx(
        0.03
    )
    assert reg.get_sample_value("fieldtui_agent_frames_total") == 1
    assert reg.get_sample_value("fieldtui_agent_frames_dropped_total") == 2


def test_state_is_read_at_scrape_time() -> None:
    m = AgentMetrics()
    state = {"fps": 30.0}
    camera = CameraHealth(brightness=12.0, sharpness=3.5, sharpness_ratio=0.2, ok=False, reasons=["dark"])
    m.set_state_provider(
        lambda: StateSnapshot(
            fps=state["fps"], drop_rate=0.0, confidence_avg=None, source_up=False, camera=camera, model=MODEL
        )
    )
    reg = m.registry
    assert reg.get_sample_value("fieldtui_agent_fps") == 30.0
    state["fps"] = 0.0  # the camera stalled: the next scrape says so, not the last value seen
    assert reg.get_sample_value("fieldtui_agent_fps") == 0.0
    assert reg.get_sample_value("fieldtui_agent_source_up") == 0.0
    assert reg.get_sample_value("model_confidence_avg") is None  # nothing detected: no average to show
    assert reg.get_sample_value("fieldtui_agent_camera_brightness") == 12.0
    assert reg.get_sample_value("fieldtui_agent_camera_sharpness") == 3.5
    assert reg.get_sample_value("fieldtui_agent_camera_sharpness_ratio") == 0.2
    assert reg.get_sample_value("fieldtui_agent_camera_ok") == 0.0
    labels = {"version": "v3", "backend": "onnxruntime", "layout": "yolov8", "sha256": "ab" * 32}
    assert reg.get_sample_value("fieldtui_agent_model_info", labels) == 1.0


def test_a_failing_state_provider_does_not_break_the_scrape() -> None:
    m = AgentMetrics()

    def broken() -> StateSnapshot:
        raise RuntimeError("pipeline gone")

    m.set_state_provider(broken)
    m.observe_frame(capture=0.0, preprocess=0.001, infer=0.01, postprocess=0.001, counts={})
    text = generate_latest(m.registry).decode()
    assert "inference_latency_seconds_count 1.0" in text
    assert "fieldtui_agent_fps" not in text


def test_each_instance_has_its_own_registry() -> None:
    a, b = AgentMetrics(), AgentMetrics(CollectorRegistry())
    a.observe_frame(capture=0.0, preprocess=0.0, infer=0.01, postprocess=0.0, counts={"circle": 1})
    assert a.registry is not b.registry
    assert a.registry.get_sample_value("fieldtui_agent_frames_total") == 1
    assert b.registry.get_sample_value("fieldtui_agent_frames_total") == 0
