"""The committed demo model: the YOLOv8 ONNX contract, and real accuracy on frames it never saw.

The model is run through the agent's own Detector (ONNX Runtime), exactly as the pipeline runs it; the
scoring lives in packaging/demo-model/evaluate.py so the figures in that README and these assertions
come from the same code (torch is not needed here).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from agent.frames.sources.demo import CLASSES
from agent.inference.detector import Detector, demo_model_path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "demo_model_evaluate", REPO / "packaging/demo-model/evaluate.py"
)
evaluation = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = evaluation  # its dataclasses look their module up while it loads
_spec.loader.exec_module(evaluation)

# Training renders scenes with seeds 1_000_000..1_999_999 (TRAIN_SEEDS in packaging/demo-model/train.py)
# and train.py scores itself on seeds 10_000..; these seeds are used by neither.
HELD_OUT_SEEDS = range(0, 200)


@pytest.fixture(scope="module")
def detector():
    with Detector.load(None, threads=2) as det:
        yield det


def test_onnx_follows_the_yolov8_contract():
    path = demo_model_path()
    assert path.stat().st_size <= 5 * 1024 * 1024
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    assert inp.name == "images"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    n, c, h, w = (d.dim_value for d in inp.type.tensor_type.shape.dim)
    meta = {p.key: p.value for p in model.metadata_props}
    stride = int(meta["stride"])
    assert (n, c) == (1, 3) and h == w and h % stride == 0
    assert ast.literal_eval(meta["imgsz"]) == [h, w]
    assert meta["task"] == "detect"
    assert ast.literal_eval(meta["names"]) == dict(enumerate(CLASSES))
    (out,) = model.graph.output
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    assert dims == [1, 4 + len(CLASSES), (h // stride) ** 2]


def test_detector_reads_it_as_a_yolov8_model(detector):
    assert detector.layout == "yolov8"
    assert detector.names == dict(enumerate(CLASSES))
    assert detector.input_dtype == np.float32


def test_match_counts_true_and_false_positives():
    truth = [(0, 10, 10, 50, 50), (1, 100, 100, 140, 140), (1, 200, 200, 240, 240)]
    boxes = np.array(
        [
            [11, 11, 50, 50],
            [12, 10, 51, 49],
            [100, 100, 140, 140],
            [300, 300, 340, 340],
            [200, 200, 240, 240],
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    classes = np.array(
        [0, 0, 1, 1, 2]
    )  # a duplicate, a box where nothing is, a right box with the wrong class
    assert evaluation.match(boxes, scores, classes, truth) == (2, 3, 1)
    assert evaluation.match(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), truth) == (0, 0, 3)
    # A shape less than half in view is optional: finding it is no false positive, missing it no miss.
    optional = [(1, 295, 305, 340, 340)]
    assert evaluation.match(boxes, scores, classes, truth, optional) == (2, 2, 1)


def test_precision_and_recall_on_held_out_frames(detector):
    # Ground truth is every shape at least half in view; shapes less than half in view (hidden behind
    # another) are optional, as ignore regions are in pedestrian benchmarks. strict_precision counts
    # them as false positives too and is reported in packaging/demo-model/README.md.
    score = evaluation.evaluate(detector, HELD_OUT_SEEDS, faults=False)
    assert score.tp + score.fn >= 400  # 200 frames with several shapes each: a real sample
    assert score.precision >= 0.90, f"precision {score.precision:.3f} (TP {score.tp}, FP {score.fp})"
    assert score.recall >= 0.90, f"recall {score.recall:.3f} (TP {score.tp}, FN {score.fn})"


def test_camera_faults_lower_the_confidence(detector):
    # What the pipeline's model_confidence_avg builds on: a degraded camera shows as lower confidence
    # (or no detections at all), never as a confident model.
    score = evaluation.evaluate(detector, range(200, 240))
    clean = score.mean_confidence("clean")
    assert clean > 0.6
    for kind in evaluation.FAULTS:
        found = score.confidences[kind]
        assert (
            len(found) < 0.5 * len(score.confidences["clean"]) or score.mean_confidence(kind) < clean - 0.15
        ), kind
