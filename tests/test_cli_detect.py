"""`fieldtui-agent detect` and `doctor` as a technician runs them: a real subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fieldtui.protocol import BackendInfo, DetectResult
from tests.modelgen import coco_like_names, save_model, ultralytics_metadata, yolov8_output

ROOT = Path(__file__).resolve().parents[1]


def agent(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    save_model(
        root / "model.onnx",
        [yolov8_output([(200, 240, 100, 100, 0, 0.9), (420, 320, 80, 40, 2, 0.6)], 80)],
        metadata=ultralytics_metadata(coco_like_names(80)),
    )
    cv2.imwrite(str(root / "wide.jpg"), np.full((720, 1280, 3), 60, np.uint8))
    cv2.imwrite(str(root / "square.png"), np.full((640, 640, 3), 60, np.uint8))
    (root / "broken.jpg").write_text("not an image", encoding="utf-8")
    return root


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert proc.stdout == ""  # nothing half-written
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_detect_json_boxes_in_original_pixels(files):
    proc = agent(
        "detect", files / "wide.jpg", files / "square.png", "--model", files / "model.onnx", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    result = DetectResult.model_validate_json(proc.stdout)
    wide, square = result.results
    assert (wide.image, square.image) == ("wide.jpg", "square.png")
    assert [(d.class_id, d.class_name) for d in wide.detections] == [(0, "thing0"), (2, "thing2")]
    assert wide.detections[0].box == [300.0, 100.0, 500.0, 300.0]  # ratio 0.5, 140 px top padding undone
    assert wide.detections[1].box == [760.0, 320.0, 920.0, 400.0]
    assert square.detections[0].box == [150.0, 190.0, 250.0, 290.0]  # no letterbox on a 640x640 image
    assert set(json.loads(proc.stdout)["results"][0]["detections"][0]) == {
        "class_id",
        "class_name",
        "confidence",
        "box",
    }


def test_detect_conf_flag_and_text_output(files):
    proc = agent("detect", files / "wide.jpg", "--model", files / "model.onnx", "--conf", "0.7")
    assert proc.returncode == 0, proc.stderr
    assert "wide.jpg: 1 detection(s)" in proc.stdout
    assert "thing0" in proc.stdout and "thing2" not in proc.stdout


def test_missing_image_is_one_line(files):
    proc = agent("detect", files / "nowhere.jpg", "--model", files / "model.onnx", "--json")
    assert_one_clear_line(proc, "image not found", "nowhere.jpg")


def test_undecodable_image_is_one_line(files):
    proc = agent(
        "detect", files / "wide.jpg", files / "broken.jpg", "--model", files / "model.onnx", "--json"
    )
    assert_one_clear_line(proc, "cannot decode", "broken.jpg")


def test_bad_model_file_is_one_line(files):
    proc = agent("detect", files / "wide.jpg", "--model", files / "broken.jpg")
    assert_one_clear_line(proc, "broken.jpg is not a loadable ONNX model")


def test_doctor_json_lists_every_backend():
    proc = agent("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    infos = [BackendInfo.model_validate(item) for item in json.loads(proc.stdout)]
    assert [i.key for i in infos] == ["onnxruntime", "tensorrt", "hailo", "litert"]
    assert infos[0].available and "CPUExecutionProvider" in infos[0].providers
    assert all(i.reason for i in infos)
