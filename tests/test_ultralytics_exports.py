"""The agent against Ultralytics itself: real exports of YOLOv8n, YOLO11n, YOLOv10n and YOLO26n (raw,
``nms=False`` end-to-end, ``nms=True``, ``dynamic=True``), compared box by box with what Ultralytics'
own predictor detects on the same files and frames (tests/exports/make.py writes both).

The models come from, in order: ``FIELDTUI_EXPORTS`` (a folder made by tests/exports/make.py), or a fresh
run of make.py with ``FIELDTUI_ULTRALYTICS_PYTHON`` (an interpreter with the ``test-data`` extra) or with
this interpreter when it has ultralytics and torch. Otherwise the tests skip and say so. Run with ``-s``
to see the per-model recall, precision and largest confidence difference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.inference.detector import Detector
from tests.exports.make import FRAMES, REFERENCE, frames

MAKE = Path(__file__).resolve().parent / "exports" / "make.py"
# Making the sixteen exports takes minutes on two cores (only where the test-data extra is installed).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
IOU_MATCH = 0.9


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1y1x2y2 boxes: a reference written here, not the agent's NMS code."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def match(reference: list[dict], boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray):
    """Greedy one-to-one matching, best reference score first: same class and IoU >= 0.9, or corners
    within 1 px (a box clipped to a sliver at the image edge has no area to overlap). Returns (matched pairs, conf differences, largest box corner difference in pixels)."""
    if not reference or not len(scores):
        return 0, [], 0.0
    ref_boxes = np.array([r["box"] for r in reference], np.float64)
    iou = _box_iou(ref_boxes, boxes.astype(np.float64))
    taken = np.zeros(len(scores), bool)
    diffs, corner = [], 0.0
    for i in np.argsort([-r["score"] for r in reference], kind="stable"):
        close = np.abs(boxes - ref_boxes[i]).max(axis=1) <= 1.0
        ok = (classes == reference[i]["class"]) & ~taken & ((iou[i] >= IOU_MATCH) | close)
        if not ok.any():
            continue
        j = int(np.argmax(np.where(ok, iou[i] + close, -1)))
        taken[j] = True
        diffs.append(abs(float(scores[j]) - reference[i]["score"]))
        corner = max(corner, float(np.abs(boxes[j] - ref_boxes[i]).max()))
    return len(diffs), diffs, corner


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    given = os.environ.get("FIELDTUI_EXPORTS")
    if given:
        folder = Path(given)
        if not (folder / "reference.json").is_file():
            pytest.fail(f"FIELDTUI_EXPORTS={given} has no reference.json: make it with tests/exports/make.py")
        return folder
    python = os.environ.get("FIELDTUI_ULTRALYTICS_PYTHON")
    if not python and all(importlib.util.find_spec(m) for m in ("ultralytics", "torch")):
        python = sys.executable
    if not python:
        pytest.skip(
            "no Ultralytics exports: install the test-data extra (ultralytics, torch), set "
            "FIELDTUI_ULTRALYTICS_PYTHON to an interpreter that has it, or FIELDTUI_EXPORTS to a folder "
            "made by tests/exports/make.py"
        )
    out = tmp_path_factory.mktemp("exports")
    subprocess.run([python, str(MAKE), "--out", str(out)], check=True, timeout=1800, capture_output=True)
    return out


def test_agent_detects_what_ultralytics_detects_on_its_own_exports(exports):
    reference = json.loads((exports / "reference.json").read_text(encoding="utf-8"))
    assert reference["frames"] == [list(f) for f in FRAMES]
    images = frames()
    rows, failures = [], []
    for name, model in sorted(reference["models"].items()):
        n_ref = n_agent = n_matched = 0
        diffs: list[float] = []
        corner = 0.0
        with Detector.load(exports / name, conf=0.25, iou=0.7, max_det=300) as det:
            layout = det.layout
            for image, expected in zip(images, model["detections"], strict=True):
                found = det.detect(image)
                m, d, c = match(expected, found.boxes, found.scores, found.class_ids)
                n_ref, n_agent, n_matched = n_ref + len(expected), n_agent + len(found), n_matched + m
                diffs += d
                corner = max(corner, c)
        recall = n_matched / n_ref if n_ref else 1.0
        precision = n_matched / n_agent if n_agent else 1.0
        conf_diff = max(diffs, default=0.0)
        rows.append(
            f"{name:24} {layout:8} {str(model['outputs']):28} ref {n_ref:3} agent {n_agent:3} "
            f"recall {recall:.3f} precision {precision:.3f} max conf diff {conf_diff:.2e} max box diff {corner:.3f} px"
        )
        if n_ref == 0 or recall < 0.98 or precision < 0.98 or conf_diff > 1e-3:
            failures.append(rows[-1])
    print(f"\nagent vs Ultralytics {reference['ultralytics']} predictor, imgsz {reference['imgsz']}:")
    print("\n".join(rows))
    assert len(rows) >= 4 and not failures, "\n".join(failures)


def test_committed_reference_is_what_the_recipe_makes(exports):
    """tests/exports/reference.json is the record of one run of make.py: a run with the same ultralytics
    and torch gives the same boxes (the recipe is seeded and deterministic on CPU)."""
    fresh = json.loads((exports / "reference.json").read_text(encoding="utf-8"))
    committed = json.loads(REFERENCE.read_text(encoding="utf-8"))
    if (fresh["ultralytics"], fresh["torch"]) != (committed["ultralytics"], committed["torch"]):
        pytest.skip(
            f"the committed reference was made with ultralytics {committed['ultralytics']} and torch "
            f"{committed['torch']}, these exports with {fresh['ultralytics']} and {fresh['torch']}"
        )
    assert sorted(fresh["models"]) == sorted(committed["models"])
    for name, model in committed["models"].items():
        for expected, got in zip(model["detections"], fresh["models"][name]["detections"], strict=True):
            boxes = np.array([g["box"] for g in got]).reshape(-1, 4)
            scores = np.array([g["score"] for g in got])
            classes = np.array([g["class"] for g in got])
            matched, diffs, _ = match(expected, boxes, scores, classes)
            assert matched == len(expected) == len(got), name
            assert max(diffs, default=0.0) < 1e-3, name


def test_engine_rebuild_of_a_dynamic_export_is_built_and_compared_at_its_square(exports, tmp_path):
    """The pipeline feeds a dynamic-size model stride rectangles, but an engine is built at the fixed
    square: calibration and timing tensors of 192x320 crashed the build ("Got: 192 Expected: 320")."""
    from agent.bench.frames import scene_frames
    from agent.engines.build import BuildOptions, BuildSource, rebuild
    from agent.engines.store import EngineStore
    from agent.inference.detector import file_sha256

    source = exports / "yolo11n-dynamic.onnx"
    held = scene_frames(6, 1280, 720)
    result = rebuild(
        EngineStore(tmp_path / "engines"),
        BuildSource(source, file_sha256(source)),
        BuildOptions(precision="fp32", held_out=held),
    )
    with Detector.load(source) as det:
        assert det.preprocess(held[0])[0].shape == (1, 3, 192, 320)  # the pipeline still gets rectangles
    assert result.engine.fingerprint.input_shape == [1, 3, 320, 320]
    assert result.agreement_f1 == pytest.approx(1.0, abs=0.02)


# --- YOLOv5's own head [1, 3*A, 5+nc], against a decoder written here --------------------------------


def reference_yolov5(pred: np.ndarray, conf: float, iou: float, max_det: int):
    """YOLOv5's ``non_max_suppression`` (utils/general.py, multi_label=False) on one image, as its source
    reads, with a textbook per-box greedy NMS loop: objectness > conf first, then score = obj * cls,
    best class, score > conf, NMS within each class, best first, max_det kept."""
    x = pred[pred[:, 4] > conf].astype(np.float64)
    x[:, 5:] *= x[:, 4:5]
    box = np.concatenate([x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2], axis=1)
    cls = x[:, 5:].argmax(axis=1)
    score = x[np.arange(len(x)), 5 + cls]
    box, cls, score = box[score > conf], cls[score > conf], score[score > conf]
    order = list(np.argsort(-score, kind="stable"))
    kept: list[int] = []
    while order and len(kept) < max_det:
        i = order.pop(0)
        kept.append(i)
        order = [
            j for j in order if cls[j] != cls[i] or _box_iou(box[i : i + 1], box[j : j + 1])[0, 0] <= iou
        ]
    return box[kept], score[kept], cls[kept]


def reference_scale_boxes(
    boxes: np.ndarray, input_hw: tuple[int, int], image_hw: tuple[int, int]
) -> np.ndarray:
    """YOLOv5's ``scale_boxes``: undo the centred letterbox, clip to the image."""
    gain = min(input_hw[0] / image_hw[0], input_hw[1] / image_hw[1])
    pad_x = round((input_hw[1] - image_hw[1] * gain) / 2 - 0.1)
    pad_y = round((input_hw[0] - image_hw[0] * gain) / 2 - 0.1)
    out = (boxes - [pad_x, pad_y, pad_x, pad_y]) / gain
    out[:, 0::2] = out[:, 0::2].clip(0, image_hw[1])
    out[:, 1::2] = out[:, 1::2].clip(0, image_hw[0])
    return out


def test_yolov5_objectness_head_matches_a_reference_decoder(exports):
    import onnxruntime as ort

    from agent.inference.preprocess import preprocess

    path = exports / "yolov5-v5head.onnx"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in {exports}: make it with tests/exports/make.py")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n_ref = n_agent = n_matched = 0
    diffs: list[float] = []
    with Detector.load(path, conf=0.25, iou=0.45, max_det=300) as det:
        assert det.layout == "yolov5" and det.output_layout.nc == 80
        for image in frames():
            raw = session.run(None, {"images": preprocess(image, 320)[0]})[0]
            assert raw.shape == (1, 3 * (40 * 40 + 20 * 20 + 10 * 10), 85)
            box, score, cls = reference_yolov5(raw[0], 0.25, 0.45, 300)
            expected = [
                {"box": b.tolist(), "score": float(s), "class": int(c)}
                for b, s, c in zip(
                    reference_scale_boxes(box, (320, 320), image.shape[:2]), score, cls, strict=True
                )
            ]
            found = det.detect(image)
            m, d, _ = match(expected, found.boxes, found.scores, found.class_ids)
            n_ref, n_agent, n_matched, diffs = (
                n_ref + len(expected),
                n_agent + len(found),
                n_matched + m,
                diffs + d,
            )
    recall, precision = n_matched / max(n_ref, 1), n_matched / max(n_agent, 1)
    print(f"\nyolov5-v5head.onnx [1,6300,85]: ref {n_ref} agent {n_agent} recall {recall:.3f} "
          f"precision {precision:.3f} max conf diff {max(diffs, default=0):.2e}")  # fmt: skip
    assert n_ref >= 10 and recall == precision == 1.0 and max(diffs) < 1e-5
