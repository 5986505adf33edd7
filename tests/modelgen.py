"""Small synthetic ONNX detectors for tests, built with the ``onnx`` package.

Each model takes a real ``images`` input and returns fixed outputs: a Constant plus ``0 * mean(images)``,
so ONNX Runtime really runs a graph that reads the input, and a test knows exactly which boxes and
scores the model "detects". The layouts are the real ones (YOLOv8 raw, end-to-end, YOLOv5); the
metadata is what Ultralytics writes (``names`` as a dict repr, ``imgsz``, ``stride``, ``task``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # old enough for every onnxruntime the agent supports

_ONNX_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}


def coco_like_names(nc: int) -> dict[int, str]:
    return {i: f"thing{i}" for i in range(nc)}


def save_model(
    path: Path,
    outputs: Sequence[np.ndarray],
    *,
    input_shape: Sequence[int | str] = (1, 3, 640, 640),
    input_dtype: type | np.dtype = np.float32,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a model whose outputs are ``outputs`` (any shapes) whatever the image."""
    in_dtype = np.dtype(input_dtype)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Cast", ["mean"], ["mean32"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0), "zero")),
        helper.make_node("Mul", ["mean32", "zero"], ["nothing"]),
    ]
    graph_outputs = []
    for i, value in enumerate(outputs):
        value = np.asarray(value)
        name = f"output{i}"
        nodes += [
            helper.make_node(
                "Constant", [], [f"const{i}"], value=numpy_helper.from_array(value, f"value{i}")
            ),
            helper.make_node("Cast", ["nothing"], [f"nothing{i}"], to=_ONNX_TYPES[value.dtype]),
            helper.make_node("Add", [f"const{i}", f"nothing{i}"], [name]),
        ]
        graph_outputs.append(helper.make_tensor_value_info(name, _ONNX_TYPES[value.dtype], list(value.shape)))
    graph = helper.make_graph(
        nodes,
        "synthetic-detector",
        [helper.make_tensor_value_info("images", _ONNX_TYPES[in_dtype], list(input_shape))],
        graph_outputs,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def ultralytics_metadata(names: dict[int, str] | None, imgsz: int = 640, **extra: str) -> dict[str, str]:
    meta = {"task": "detect", "stride": "32", "imgsz": str([imgsz, imgsz]), **extra}
    if names is not None:
        meta["names"] = str(names)
    return meta


def ultralytics_export_metadata(
    names: dict[int, str],
    imgsz: int = 320,
    *,
    nms: bool = False,
    end2end: bool = False,
    dynamic: bool = False,
    batch: int = 1,
) -> dict[str, str]:
    """Every key Ultralytics 8.3/8.4's ONNX exporter writes, each value ``str()``-ed as it does."""
    meta = {
        "description": "Ultralytics YOLO11n model",
        "author": "Ultralytics",
        "date": "2026-01-01T00:00:00",
        "version": "8.4.0",
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "stride": 32,
        "task": "detect",
        "batch": batch,
        "imgsz": [imgsz, imgsz],
        "names": names,
        "args": {
            "batch": batch,
            "half": False,
            "dynamic": dynamic,
            "simplify": True,
            "opset": None,
            "nms": nms,
        },
        "channels": 3,
        "end2end": end2end,
    }
    return {k: str(v) for k, v in meta.items()}


def yolov8_output(
    dets: Sequence[tuple[float, float, float, float, int, float]],
    nc: int,
    anchors: int = 8400,
    *,
    transposed: bool = False,
    background: float = 0.01,
    dtype: type = np.float32,
) -> np.ndarray:
    """[1, 4+nc, anchors] (or [1, anchors, 4+nc]): ``dets`` are (cx, cy, w, h, class_id, score) placed
    on the first anchors; every other anchor has a small box and ``background`` scores."""
    out = np.full((4 + nc, anchors), background, dtype=np.float32)
    out[0:2] = 320.0
    out[2:4] = 10.0
    for i, (cx, cy, w, h, cls, score) in enumerate(dets):
        out[:4, i] = (cx, cy, w, h)
        out[4 + cls, i] = score
    out = out.T if transposed else out
    return np.ascontiguousarray(out[None]).astype(dtype)


def yolov5_output(
    dets: Sequence[tuple[float, float, float, float, float, int, float]], nc: int, anchors: int = 25200
) -> np.ndarray:
    """[1, anchors, 5+nc]: ``dets`` are (cx, cy, w, h, objectness, class_id, class_score)."""
    out = np.zeros((anchors, 5 + nc), dtype=np.float32)
    out[:, 0:2] = 320.0
    out[:, 2:4] = 10.0
    out[:, 4] = 0.001
    out[:, 5:] = 0.5
    for i, (cx, cy, w, h, obj, cls, score) in enumerate(dets):
        out[i, :5] = (cx, cy, w, h, obj)
        out[i, 5:] = 0.0
        out[i, 5 + cls] = score
    return out[None]


def end2end_output(rows: Sequence[tuple[float, float, float, float, float, int]], k: int = 300) -> np.ndarray:
    """[1, k, 6]: ``rows`` are (x1, y1, x2, y2, score, class_id); the rest are zero rows."""
    out = np.zeros((k, 6), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i] = row
    return out[None]


def demo_with_batch(out: Path, batch: int | str) -> Path:
    """The demo model with its batch axis set to ``batch``: a number (a model built for a fixed batch,
    as an engine or an ONNX exported with batch=N is) or a name (dynamic). The graph is batch-agnostic."""
    from agent.inference.detector import demo_model_path

    model = onnx.load(str(demo_model_path()))
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        if isinstance(batch, int):
            dim.ClearField("dim_param")
            dim.dim_value = batch
        else:
            dim.ClearField("dim_value")
            dim.dim_param = batch
    del model.graph.value_info[:]
    path = out / f"demo-batch-{batch}.onnx"
    onnx.save(model, str(path))
    return path
