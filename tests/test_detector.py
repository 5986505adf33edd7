"""Detector.load on real ONNX Runtime with synthetic models: names, layouts, bad files, backends."""

from __future__ import annotations

import hashlib
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import agent.inference.detector as detector_module
from agent.core.errors import AgentError, BackendUnavailable, ImageError, ModelError
from agent.inference.backends import BACKENDS, doctor, get_backend
from agent.inference.backends.onnxruntime import OnnxRuntimeBackend
from agent.inference.detector import Detector, demo_model_path, detect_images
from tests.modelgen import (
    coco_like_names,
    end2end_output,
    save_model,
    ultralytics_metadata,
    yolov5_output,
    yolov8_output,
)

# Two objects, in model-input pixels of a 640x640 letterbox.
V8_DETS = [(200, 240, 100, 100, 0, 0.9), (204, 242, 100, 100, 0, 0.8), (420, 320, 80, 40, 2, 0.6)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_model(
        root / "v8.onnx", [yolov8_output(V8_DETS, 80)], metadata=ultralytics_metadata(coco_like_names(80))
    )
    return root


def frame_1280x720() -> np.ndarray:
    return np.full((720, 1280, 3), 60, np.uint8)


def test_yolov8_model_loads_and_detects_in_original_pixels(models):
    path = models / "v8.onnx"
    with Detector.load(path) as det:
        assert det.layout == "yolov8"
        assert det.input_shape == (1, 3, 640, 640)
        assert det.input_dtype == np.float32
        assert det.names[0] == "thing0" and len(det.names) == 80
        assert det.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        info = det.info
        assert (info.backend, info.format, info.layout, info.input_dtype) == (
            "onnxruntime",
            "onnx",
            "yolov8",
            "float32",
        )
        assert info.input_shape == [1, 3, 640, 640] and info.sha256 == det.sha256 and info.path == str(path)

        result = det.detect(frame_1280x720())
    # ratio 0.5, 140 px of padding on top: (150,190,250,290) -> (300,100,500,300)
    assert result.class_ids.tolist() == [0, 2]
    assert np.allclose(result.boxes, [[300, 100, 500, 300], [760, 320, 920, 400]])
    assert np.allclose(result.scores, [0.9, 0.6])


def test_the_three_steps_compose_like_detect(models):
    with Detector.load(models / "v8.onnx", conf=0.7) as det:
        tensor, lb = det.preprocess(frame_1280x720())
        assert tensor.shape == (1, 3, 640, 640) and lb.pad == (0.0, 140.0)
        result = det.postprocess(det.infer(tensor), lb)
    assert result.class_ids.tolist() == [0]  # conf 0.7 drops the 0.6 box


def test_fp16_model_gets_fp16_input(tmp_path):
    out = yolov8_output([(320, 320, 64, 64, 1, 0.75)], 2, dtype=np.float16)
    path = save_model(
        tmp_path / "half.onnx", [out], input_dtype=np.float16, metadata=ultralytics_metadata({0: "a", 1: "b"})
    )
    with Detector.load(path) as det:
        assert det.input_dtype == np.float16 and det.info.input_dtype == "float16"
        tensor, _ = det.preprocess(frame_1280x720())
        assert tensor.dtype == np.float16
        result = det.detect(frame_1280x720())
    assert det.names == {0: "a", 1: "b"}
    assert result.to_protocol(det.names)[0].class_name == "b"


def test_end2end_and_yolov5_models(tmp_path):
    e2e = save_model(
        tmp_path / "e2e.onnx",
        [end2end_output([(100, 100, 200, 200, 0.9, 1), (110, 100, 210, 200, 0.85, 1)])],
        metadata=ultralytics_metadata({0: "a", 1: "b"}, end2end="True"),
    )
    with Detector.load(e2e) as det:
        assert det.layout == "end2end"
        assert len(det.detect(np.zeros((640, 640, 3), np.uint8))) == 2  # no NMS on top of the model's
    v5 = save_model(tmp_path / "v5.onnx", [yolov5_output([(320, 320, 50, 50, 0.9, 3, 0.9)], 4)])
    with Detector.load(v5) as det:
        assert det.layout == "yolov5"
        assert det.names == {i: f"class_{i}" for i in range(4)}  # no names anywhere
        assert det.detect(np.zeros((640, 640, 3), np.uint8)).class_ids.tolist() == [3]


def test_dynamic_input_takes_the_size_from_imgsz_metadata(tmp_path):
    path = save_model(
        tmp_path / "dyn.onnx",
        [yolov8_output([], 3, anchors=anchor_320())],
        input_shape=(1, 3, "height", "width"),
        metadata={"imgsz": "[320, 320]", "names": str({0: "a", 1: "b", 2: "c"})},
    )
    with Detector.load(path) as det:
        assert det.input_shape == (1, 3, 320, 320)
        assert det.layout == "yolov8"


def anchor_320() -> int:
    return 40 * 40 + 20 * 20 + 10 * 10


# --- names ---------------------------------------------------------------------------------------


def v8_without_names(path: Path, nc: int = 3, **meta: str) -> Path:
    return save_model(path, [yolov8_output([(320, 320, 40, 40, 1, 0.9)], nc)], metadata=meta)


@pytest.mark.parametrize("labels_name", ["model.txt", "labels.txt", "model.names"])
def test_names_from_a_labels_file_beside_the_model(tmp_path, labels_name):
    path = v8_without_names(tmp_path / "model.onnx")
    (tmp_path / labels_name).write_text("cat\ndog\nbird\n", encoding="utf-8")
    with Detector.load(path) as det:
        assert det.names == {0: "cat", 1: "dog", 2: "bird"}


def test_model_txt_wins_over_labels_txt(tmp_path):
    path = v8_without_names(tmp_path / "model.onnx")
    (tmp_path / "model.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("x\ny\nz\n", encoding="utf-8")
    with Detector.load(path) as det:
        assert det.names[0] == "a"


def test_malformed_names_metadata_warns_and_falls_back(tmp_path, caplog):
    path = v8_without_names(tmp_path / "model.onnx", names="{0: 'cat', 1: ")
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="fieldtui.agent.detector"), Detector.load(path) as det:
        assert det.names == {0: "cat", 1: "dog", 2: "bird"}
    assert "not a Python dict repr" in caplog.text


def test_names_metadata_as_list_and_class_n_fallback(tmp_path, caplog):
    listed = v8_without_names(tmp_path / "listed.onnx", names="['cat', 'dog', 'bird']")
    with Detector.load(listed) as det:
        assert det.names == {0: "cat", 1: "dog", 2: "bird"}
    bare = v8_without_names(tmp_path / "bare" / "m.onnx")
    with Detector.load(bare) as det:
        assert det.names == {0: "class_0", 1: "class_1", 2: "class_2"}
    short = v8_without_names(tmp_path / "short.onnx", names="{0: 'cat'}")
    with caplog.at_level(logging.WARNING, logger="fieldtui.agent.detector"), Detector.load(short) as det:
        assert det.names == {0: "cat", 1: "class_1", 2: "class_2"}
    assert "1 class names but the output has 3 classes" in caplog.text


# --- bad models ----------------------------------------------------------------------------------


def test_missing_and_empty_model_files(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        Detector.load(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="not a file"):
        Detector.load(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        Detector.load(tmp_path / "empty.onnx")


def test_text_and_truncated_files_are_not_loadable_onnx(tmp_path, models):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"notes.onnx is not a loadable ONNX model \(INVALID_PROTOBUF"):
        Detector.load(text)
    data = (models / "v8.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.onnx is not a loadable ONNX model") as err:
        Detector.load(cut)
    assert "\n" not in str(err.value) and "copy it again" in str(err.value)


def test_non_detector_models_are_refused(tmp_path):
    classifier = save_model(tmp_path / "cls.onnx", [np.zeros((1, 1000), np.float32)])
    with pytest.raises(ModelError, match=r"output shapes \[1,1000\].*understood layouts"):
        Detector.load(classifier)
    seg = save_model(
        tmp_path / "seg.onnx",
        [np.zeros((1, 116, 8400), np.float32), np.zeros((1, 32, 160, 160), np.float32)],
        metadata={"task": "segment"},
    )
    with pytest.raises(ModelError, match="segment model"):
        Detector.load(seg)
    gray = save_model(tmp_path / "gray.onnx", [yolov8_output([], 2)], input_shape=(1, 1, 640, 640))
    with pytest.raises(ModelError, match=r"\[1,3,H,W\]"):
        Detector.load(gray)


def test_demo_model_default(monkeypatch, tmp_path, models):
    monkeypatch.setattr(detector_module, "demo_model_path", lambda: tmp_path / "absent.onnx")
    with pytest.raises(ModelError, match="embedded demo model"):
        Detector.load(None)
    monkeypatch.setattr(detector_module, "demo_model_path", lambda: models / "v8.onnx")
    with Detector.load(None) as det:
        assert det.path == models / "v8.onnx"


@pytest.mark.skipif(not demo_model_path().is_file(), reason="the demo model is not trained yet")
def test_the_shipped_demo_model_is_a_yolov8_detector():
    with Detector.load(None) as det:
        assert det.layout == "yolov8"
        assert set(det.names.values()) == {"circle", "square", "triangle", "cross"}


def test_bad_thresholds_are_one_clear_line(models):
    with pytest.raises(AgentError, match="--conf must be between 0 and 1, got 1.5"):
        Detector.load(models / "v8.onnx", conf=1.5)
    with pytest.raises(AgentError, match="--iou"):
        Detector.load(models / "v8.onnx", iou=-0.1)


def test_detect_images_checks_every_image_first(tmp_path, models):
    import cv2

    good = tmp_path / "frame.png"
    cv2.imwrite(str(good), frame_1280x720())
    result = detect_images([good], model=models / "v8.onnx")
    assert [r.image for r in result.results] == ["frame.png"]
    assert [d.class_name for d in result.results[0].detections] == ["thing0", "thing2"]
    with pytest.raises(ImageError, match="image not found"):
        detect_images([good, tmp_path / "missing.jpg"], model=models / "v8.onnx")
    with pytest.raises(ImageError, match="not an image file"):
        detect_images([tmp_path], model=models / "v8.onnx")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ImageError, match="cannot decode"):
        detect_images([junk], model=models / "v8.onnx")


# --- backends ------------------------------------------------------------------------------------


def test_registry_and_onnxruntime_availability():
    assert get_backend("onnxruntime") is OnnxRuntimeBackend is BACKENDS["onnxruntime"]
    ok, reason = OnnxRuntimeBackend.available()
    assert ok and "CPUExecutionProvider" in reason
    assert OnnxRuntimeBackend.providers()[-1] == "CPUExecutionProvider"
    with pytest.raises(BackendUnavailable, match="unknown backend 'openvino'.*onnxruntime, tensorrt, hailo"):
        get_backend("openvino")
    with pytest.raises(BackendUnavailable, match="tensorrt not importable"):
        Detector.load(None, backend="tensorrt")


def test_backend_session_settings(models):
    backend = OnnxRuntimeBackend(models / "v8.onnx", threads=1)
    try:
        assert backend.active_providers == ["CPUExecutionProvider"]
        assert backend.inputs[0].name == "images" and backend.inputs[0].shape == (1, 3, 640, 640)
        assert backend.outputs[0].shape == (1, 84, 8400)
        assert backend.metadata["task"] == "detect"
        assert backend._session.get_session_options().intra_op_num_threads == 1
    finally:
        backend.close()
    with pytest.raises(ModelError, match="was closed"):
        backend.infer(np.zeros((1, 3, 640, 640), np.float32))


def test_doctor_without_vendor_sdks():
    infos = {i.key: i for i in doctor()}
    assert list(infos) == ["onnxruntime", "tensorrt", "hailo", "litert"]
    assert infos["onnxruntime"].available and infos["onnxruntime"].version
    assert infos["onnxruntime"].providers == OnnxRuntimeBackend.providers()
    assert not infos["tensorrt"].available and "python3-libnvinfer" in infos["tensorrt"].reason
    hailo = infos["hailo"]
    assert not hailo.available
    assert hailo.reason.startswith("hailo_platform not importable: install the HailoRT wheel matching")
    assert "hailortcli fw-control identify" in hailo.reason


def test_doctor_with_vendor_sdks_present(monkeypatch):
    # Stand-ins for the vendor SDKs (which cannot be installed here): just the attributes probed.
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    hailo = types.SimpleNamespace(__version__="4.20.0", Device=types.SimpleNamespace(scan=lambda: []))
    monkeypatch.setitem(sys.modules, "hailo_platform", hailo)
    infos = {i.key: i for i in doctor()}
    assert infos["tensorrt"].version == "10.3.0"
    assert "TensorRT 10.3.0 importable" in infos["tensorrt"].reason
    assert not infos["tensorrt"].available  # importable, but no CUDA device (cuda-python missing here)
    assert "but cuda-python not importable" in infos["tensorrt"].reason
    assert infos["hailo"].version == "4.20.0" and "found no Hailo device" in infos["hailo"].reason


def test_default_threads_leave_a_core_to_capture_and_preprocessing(models, monkeypatch):
    from agent.inference.backends import onnxruntime as ort_backend

    monkeypatch.setattr(ort_backend.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    assert ort_backend.default_threads() == 3
    backend = OnnxRuntimeBackend(models / "v8.onnx")
    try:
        assert backend._session.get_session_options().intra_op_num_threads == 3
    finally:
        backend.close()
    monkeypatch.setattr(ort_backend.os, "sched_getaffinity", lambda _pid: {0})
    assert ort_backend.default_threads() == 1
