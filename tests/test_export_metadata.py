"""Ultralytics export variants (nms=True, dynamic=True, batch) as ONNX Runtime really loads them.

The models are synthetic (tests/modelgen.py) but carry exactly the shapes and metadata Ultralytics'
exporter writes, so the layout and the letterbox are decided from what a real export says.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agent.core.errors import ModelError
from agent.inference.detector import Detector
from agent.inference.export_meta import ExportInfo
from agent.inference.postprocess import anchor_count
from tests.modelgen import (
    coco_like_names,
    end2end_output,
    save_model,
    ultralytics_export_metadata,
    yolov8_output,
)

NAMES = coco_like_names(80)


def test_export_info_reads_what_ultralytics_writes():
    info = ExportInfo.from_metadata(ultralytics_export_metadata(NAMES, 320, nms=True, dynamic=True, batch=16))
    assert info == ExportInfo(task="detect", end2end=False, nms=True, imgsz=(320, 320), stride=32)
    assert ExportInfo.from_metadata({}) == ExportInfo()
    odd = ExportInfo.from_metadata(
        {"nms": "True", "args": "{'nms': False", "imgsz": "640", "stride": "[8, 16, 32]"}
    )
    assert (odd.nms, odd.imgsz, odd.stride) == (
        True,
        (640, 640),
        32,
    )  # the top-level key wins; bad args ignored
    assert ExportInfo.from_metadata({"imgsz": "[0, 0]", "stride": "True", "end2end": "maybe"}) == ExportInfo()


def test_nms_true_export_reads_as_boxes_after_nms(tmp_path, caplog):
    """Ultralytics ``export(nms=True)``: [1,300,6], end2end=False. It was read as a 2-class raw head,
    with a warning about 80 names and the class id printed as the confidence."""
    rows = [(10, 20, 110, 220, 0.9, 79), (150, 40, 250, 140, 0.5, 3)]
    path = save_model(
        tmp_path / "yolo11n-nms.onnx",
        [end2end_output(rows)],
        input_shape=(1, 3, 320, 320),
        metadata=ultralytics_export_metadata(NAMES, 320, nms=True),
    )
    with caplog.at_level(logging.WARNING, logger="fieldtui.agent.detector"), Detector.load(path) as det:
        assert det.layout == "end2end"
        assert len(det.names) == 80
        found = det.detect(np.full((320, 320, 3), 90, np.uint8))
    assert "class names but the output has" not in caplog.text
    assert found.scores.tolist() == pytest.approx([0.9, 0.5])
    assert found.class_ids.tolist() == [79, 3]
    assert found.boxes[0].tolist() == pytest.approx([10, 20, 110, 220])


def test_export_without_nms_metadata_that_looks_like_nms_output_is_refused(tmp_path):
    meta = ultralytics_export_metadata(NAMES, 320)
    del meta["args"]  # an exporter that says end2end=False and nothing about NMS
    path = save_model(tmp_path / "m.onnx", [end2end_output([])], input_shape=(1, 3, 320, 320), metadata=meta)
    with pytest.raises(ModelError, match=r"80 class names but 6 values per row and 300 rows.*re-export"):
        Detector.load(path)


def test_metadata_saying_nms_on_a_raw_output_is_refused(tmp_path):
    path = save_model(
        tmp_path / "m.onnx",
        [yolov8_output([], 80, anchors=anchor_count((320, 320)))],
        input_shape=(1, 3, 320, 320),
        metadata=ultralytics_export_metadata(NAMES, 320, nms=True),
    )
    with pytest.raises(ModelError, match="the metadata says nms=True"):
        Detector.load(path)


def _e2e_model(tmp_path, name: str, input_shape, *, dynamic: bool):
    # One box in model-input pixels: where it lands in the frame depends on the letterbox used.
    return save_model(
        tmp_path / name,
        [end2end_output([(100, 50, 200, 150, 0.9, 0)])],
        input_shape=input_shape,
        metadata=ultralytics_export_metadata(NAMES, 320, end2end=True, dynamic=dynamic),
    )


def test_dynamic_export_is_letterboxed_to_the_stride_rectangle_like_ultralytics(tmp_path):
    frame = np.full((720, 1280, 3), 90, np.uint8)
    dynamic = _e2e_model(tmp_path, "dyn.onnx", (1, 3, "height", "width"), dynamic=True)
    with Detector.load(dynamic) as det:
        assert det.input_shape == (1, 3, 320, 320)  # imgsz: the size it is probed and benchmarked at
        tensor, lb = det.preprocess(frame)
        assert tensor.shape == (1, 3, 192, 320)  # 1280x720 at imgsz 320: 320x180, padded to 192
        assert lb.pad == (0.0, 6.0)
        found = det.detect(frame)
    assert found.boxes[0].tolist() == pytest.approx([400, 176, 800, 576])  # (y - 6) / 0.25

    fixed = _e2e_model(tmp_path, "fixed.onnx", (1, 3, 320, 320), dynamic=False)
    with Detector.load(fixed) as det:
        tensor, lb = det.preprocess(frame)
        assert tensor.shape == (1, 3, 320, 320)  # a fixed model keeps its square
        assert det.detect(frame).boxes[0].tolist() == pytest.approx([400, 0, 800, 320])  # (y - 70) / 0.25


def test_fixed_batch_export_is_fed_padded_batches_and_one_without_rows_per_image_is_refused(tmp_path):
    # Issue 19: a model built for a fixed batch serves several cameras a call; fewer frames are padded.
    path = save_model(
        tmp_path / "b16.onnx",
        [np.zeros((16, 300, 6), np.float32)],
        input_shape=(16, 3, 320, 320),
        metadata=ultralytics_export_metadata(NAMES, 320, nms=True, batch=16),
    )
    with Detector.load(path) as det:
        assert det.fixed_batch == 16
        tensor, _ = det.preprocess(np.zeros((240, 320, 3), np.uint8))
        assert [o.shape for o in det.infer(tensor)] == [(1, 300, 6)]
    broken = save_model(
        tmp_path / "b16-one-row.onnx",
        [np.zeros((1, 300, 6), np.float32)],
        input_shape=(16, 3, 320, 320),
        metadata=ultralytics_export_metadata(NAMES, 320, nms=True, batch=16),
    )
    with pytest.raises(
        ModelError, match=r"fixed batch of 16 images but its outputs do not have one row per "
    ):
        Detector.load(broken)


def test_dynamic_in_name_only_is_fed_squares(tmp_path, caplog):
    """An export whose axes are named dynamic but that reshapes its input to the export size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = end2end_output([(100, 50, 200, 150, 0.9, 0)])
    nodes = [
        helper.make_node(
            "Constant", [], ["shape"], value=numpy_helper.from_array(np.array([1, 3, 320, 320]), "s")
        ),
        helper.make_node("Reshape", ["images", "shape"], ["fixed"]),
        helper.make_node("ReduceMean", ["fixed"], ["mean"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0), "z")),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Constant", [], ["boxes"], value=numpy_helper.from_array(out, "b")),
        helper.make_node("Add", ["boxes", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed-inside",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in ultralytics_export_metadata(NAMES, 320, end2end=True, dynamic=True).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    path = tmp_path / "fake-dynamic.onnx"
    onnx.save(model, str(path))
    frame = np.full((720, 1280, 3), 90, np.uint8)
    with caplog.at_level(logging.WARNING, logger="fieldtui.agent.detector"), Detector.load(path) as det:
        assert det.preprocess(frame)[0].shape == (1, 3, 320, 320)
        assert len(det.detect(frame)) == 1
    assert "declares a dynamic input size but fails on rectangles" in caplog.text
