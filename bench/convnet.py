"""A small convolutional detector with the YOLOv8 output contract, for benchmarks.

Random weights, real compute: a stride-2 conv backbone down to P5 and a 1x1 head at P3/P4/P5, giving
``[1, 4+nc, anchors]`` (8400 anchors at 640x640) like an Ultralytics export. Class scores are pushed low
(sigmoid of a negative logit) so postprocessing sees what a trained model on a quiet scene gives, not
8400 candidates. Only ``onnx`` is needed to build it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_conv_detector(path: Path, *, imgsz: int = 640, nc: int = 80, width: int = 16, seed: int = 0) -> Path:
    """Write the model to ``path``: input ``images`` [1,3,imgsz,imgsz] float32, output [1,4+nc,N]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def weight(name: str, shape: tuple[int, ...], fan_in: int) -> str:
        inits.append(
            numpy_helper.from_array(rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32), name)
        )
        return name

    def conv(x: str, cin: int, cout: int, k: int, stride: int, name: str, act: bool = True) -> str:
        w = weight(f"{name}.w", (cout, cin, k, k), cin * k * k)
        b = numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b")
        inits.append(b)
        out = f"{name}.y"
        pad = k // 2
        nodes.append(
            helper.make_node("Conv", [x, w, f"{name}.b"], [out], kernel_shape=[k, k], strides=[stride, stride],
                             pads=[pad, pad, pad, pad])
        )  # fmt: skip
        if not act:
            return out
        nodes.append(helper.make_node("Relu", [out], [f"{name}.a"]))
        return f"{name}.a"

    # Backbone: /2 /4 /8 (P3) /16 (P4) /32 (P5), an extra 3x3 at each of P3..P5 for some depth.
    chans = [3, width, width * 2, width * 4, width * 8, width * 16]
    x = "images"
    feats = []
    for i in range(5):
        x = conv(x, chans[i], chans[i + 1], 3, 2, f"down{i}")
        if i >= 2:
            x = conv(x, chans[i + 1], chans[i + 1], 3, 1, f"block{i}")
            feats.append((x, chans[i + 1]))
    heads = []
    for j, (feat, c) in enumerate(feats):
        h = conv(feat, c, 4 + nc, 1, 1, f"head{j}", act=False)
        nodes.append(helper.make_node("Reshape", [h, "flat_shape"], [f"flat{j}"]))
        heads.append(f"flat{j}")
    inits.append(numpy_helper.from_array(np.array([1, 4 + nc, -1], np.int64), "flat_shape"))
    nodes.append(helper.make_node("Concat", heads, ["raw"], axis=2))
    inits.append(numpy_helper.from_array(np.array([4, nc], np.int64), "split"))
    nodes.append(helper.make_node("Split", ["raw", "split"], ["box_raw", "cls_raw"], axis=1))
    # Boxes: cx, cy within the image, w, h up to a quarter of it. Scores: mostly well under 0.25.
    inits.append(
        numpy_helper.from_array(
            np.array([imgsz, imgsz, imgsz / 4, imgsz / 4], np.float32).reshape(1, 4, 1), "box_scale"
        )
    )
    inits.append(numpy_helper.from_array(np.float32(-7.0), "cls_bias"))
    nodes += [
        helper.make_node("Sigmoid", ["box_raw"], ["box_unit"]),
        helper.make_node("Mul", ["box_unit", "box_scale"], ["boxes"]),
        helper.make_node("Add", ["cls_raw", "cls_bias"], ["cls_logit"]),
        helper.make_node("Sigmoid", ["cls_logit"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    anchors = sum((imgsz // s) ** 2 for s in (8, 16, 32))
    graph = helper.make_graph(
        nodes,
        "bench-convnet",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, anchors])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "task": "detect",
        "stride": "32",
        "imgsz": str([imgsz, imgsz]),
        "names": str({i: f"class{i}" for i in range(nc)}),
    }
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
