"""The agent's LiteRT backend on Ultralytics' own TFLite exports of YOLOv8n (float32 and INT8, made by
tests/exports/tflite.py with Ultralytics' exporter), against the ONNX export of the same weights and
against what Ultralytics' own predictor detects with each .tflite.

The models come from ``FIELDTUI_TFLITE_EXPORTS`` (a folder made by tests/exports/tflite.py), or a fresh
run of it with ``FIELDTUI_ULTRALYTICS_PYTHON`` (an interpreter with the ``test-data`` extra plus
litert-torch and ai-edge-quantizer, Ultralytics' LiteRT export requirements) or with this interpreter
when it has them. Otherwise the tests skip and say so. Run with ``-s`` to see the F1 figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from agent.inference.agreement import f1_score
from agent.inference.detector import Detector
from tests.exports.make import frames

pytest.importorskip("ai_edge_litert.interpreter")
MAKER = Path(__file__).resolve().parent / "exports" / "tflite.py"
NEEDS = ("ultralytics", "torch", "litert_torch", "ai_edge_quantizer")
# Making the exports takes a minute or two on two cores (only where those tools are installed).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    given = os.environ.get("FIELDTUI_TFLITE_EXPORTS")
    if given:
        if not (Path(given) / "tflite.json").is_file():
            pytest.fail(
                f"FIELDTUI_TFLITE_EXPORTS={given} has no tflite.json: make it with tests/exports/tflite.py"
            )
        return Path(given)
    python = os.environ.get("FIELDTUI_ULTRALYTICS_PYTHON")
    if not python and all(importlib.util.find_spec(m) for m in NEEDS):
        python = sys.executable
    if not python:
        pytest.skip(
            "no Ultralytics TFLite exports: install the test-data extra and litert-torch, ai-edge-quantizer "
            "(Ultralytics' LiteRT export requirements), set FIELDTUI_ULTRALYTICS_PYTHON to an interpreter "
            "that has them, or FIELDTUI_TFLITE_EXPORTS to a folder made by tests/exports/tflite.py"
        )
    probe = subprocess.run([python, "-c", f"import {', '.join(NEEDS)}"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"{python} cannot make Ultralytics TFLite exports ({last}): pip install litert-torch ai-edge-quantizer"
        )
    out = tmp_path_factory.mktemp("tflite")
    run = subprocess.run(
        [python, str(MAKER), "--out", str(out)], capture_output=True, text=True, timeout=1800
    )
    if run.returncode != 0:
        pytest.fail(f"tests/exports/tflite.py failed:\n{run.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def facts(exports) -> dict:
    return json.loads((exports / "tflite.json").read_text())


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return frames()


def detect(path: Path, backend: str, images, conf: float) -> tuple[list, dict[int, str], str]:
    with Detector.load(path, backend=backend, threads=2, conf=conf) as det:
        return [det.detect(f) for f in images], det.names, det.layout


def as_detections(rows: list[dict]) -> SimpleNamespace:
    boxes = np.array([r["box"] for r in rows], np.float32).reshape(-1, 4)
    scores = np.array([r["score"] for r in rows], np.float32)
    return SimpleNamespace(
        boxes=boxes, scores=scores, class_ids=np.array([r["class"] for r in rows], np.int64)
    )


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_the_agent_reads_ultralytics_tflite_export_as_ultralytics_does(exports, facts, images, precision):
    """At Ultralytics' default conf 0.25 and at 0.1: INT8 squeezes this untrained net's scores, so at
    0.25 only a couple of boxes are left to compare (tests/exports/tflite.py)."""
    name = f"yolov8n_{precision}.tflite"
    model = facts["models"][name]
    for conf in (0.25, 0.1):
        onnx, onnx_names, _ = detect(exports / "yolov8n.onnx", "onnxruntime", images, conf)
        found, names, layout = detect(exports / name, "litert", images, conf)
        assert layout == "yolov8" and names == onnx_names  # names from the metadata.json Ultralytics zips in
        ultralytics_own = [as_detections(rows) for rows in model[f"detections@{conf}"]]
        vs_ultralytics = f1_score(zip(ultralytics_own, found, strict=True))
        vs_onnx = f1_score(zip(onnx, found, strict=True))
        total = sum(len(d) for d in found)
        print(f"\n{name} (Ultralytics {facts['ultralytics']}, litert-torch {facts.get('litert_torch', '?')}; "
              f"input {model['input']}, output {model['output']}), conf {conf}: {total} detections on "
              f"{len(images)} frames (ONNX {sum(len(d) for d in onnx)}); F1 vs Ultralytics' predictor on "
              f"the same file {vs_ultralytics:.3f}, vs the ONNX export {vs_onnx:.3f}")  # fmt: skip
        assert vs_ultralytics >= 0.95, vs_ultralytics  # the agent decodes the file as Ultralytics does
        if precision == "float32":
            assert total >= len(images) and vs_onnx >= 0.95, vs_onnx  # the bar
        elif conf == 0.1:
            assert total >= len(images)  # INT8's agreement with the ONNX is reported, not held to a bar
