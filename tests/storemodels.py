"""Models for the model-store tests, in tests/modelgen.py's style: small, generated, real ONNX.

- :func:`detector` - a 128x128 YOLOv8-layout detector with the demo's classes; ``seed`` changes its
  bytes (and boxes) so v1, v2, v3 differ; ``score`` sets the confidence of its detections (a tiny one
  makes a model whose confidence collapses on live frames).
- :func:`nan_detector` - loads and has a detector layout, but every output value is NaN.
- :func:`slow_detector` - a detector that also runs a chain of 512x512 MatMuls on every frame (tens of
  milliseconds: far slower than the others, which run in well under one).
- :func:`classifier` - valid ONNX, but a [1, 1000] classifier output: not a detector.

:func:`make` builds a set of them by name (v1, v2, v3, weak, nan, slow) for a test's fixture.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests import modelgen as mg

CLASSES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
IMGSZ = 128


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def detector(path: Path, *, seed: int = 1, score: float = 0.9) -> Path:
    out = mg.yolov8_output(
        [(40 + seed, 40, 24, 24, seed % 4, score), (90, 80 + seed, 16, 16, (seed + 1) % 4, score)],
        nc=4,
        anchors=336,
    )
    meta = mg.ultralytics_metadata(CLASSES, imgsz=IMGSZ, version=f"seed{seed}")
    return mg.save_model(path, [out], input_shape=(1, 3, IMGSZ, IMGSZ), metadata=meta)


def nan_detector(path: Path) -> Path:
    out = np.full((1, 8, 336), np.nan, dtype=np.float32)
    return mg.save_model(
        path, [out], input_shape=(1, 3, IMGSZ, IMGSZ), metadata=mg.ultralytics_metadata(CLASSES, imgsz=IMGSZ)
    )


def classifier(path: Path) -> Path:
    out = np.zeros((1, 1000), dtype=np.float32)
    return mg.save_model(path, [out], input_shape=(1, 3, 224, 224), metadata={"task": "classify"})


def slow_detector(path: Path, *, size: int = 512, depth: int = 24) -> Path:
    """``depth`` chained ``size``x``size`` MatMuls that depend on the image, so nothing folds away."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    out = mg.yolov8_output([(64, 64, 24, 24, 1, 0.9)], nc=4, anchors=336)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(weight, "w")),
        helper.make_node("Mul", ["w", "mean"], ["x0"]),
    ]
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "w"], [f"x{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"x{depth}"], ["total"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0), "zero")),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Constant", [], ["const"], value=numpy_helper.from_array(out, "value")),
        helper.make_node("Add", ["const", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, IMGSZ, IMGSZ])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", mg.OPSET)])
    model.ir_version = mg.IR_VERSION
    for key, value in mg.ultralytics_metadata(CLASSES, imgsz=IMGSZ).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


MAKERS = {
    "v1": lambda path: detector(path, seed=1),
    "v2": lambda path: detector(path, seed=2),
    "v3": lambda path: detector(path, seed=3),
    "weak": lambda path: detector(path, seed=3, score=0.27),
    "nan": nan_detector,
    "slow": slow_detector,
}


def make(folder: Path, *names: str) -> dict[str, Path]:
    """The named models (keys of :data:`MAKERS`) as ``folder/<name>.onnx``."""
    return {name: MAKERS[name](folder / f"{name}.onnx") for name in names}
