"""Convert the demo model to LiteRT (.tflite): float32 and full-integer INT8, the way Ultralytics does.

    pip install -e '.[tflite-recipe]'        # TensorFlow + onnx2tf: a workstation, never a device
    python packaging/demo-model/tflite.py    # writes agent/assets/demo_float32.tflite, demo_int8.tflite

Steps, as Ultralytics' TFLite export takes them, so the files have the layout the agent meets in the field:

1. the ONNX model's box rows are divided by the input size (Ultralytics' TFLite head does this so boxes
   and class scores share one 0..1 range, which keeps an INT8 output's single scale fine enough), and
   the two places onnx2tf's layout rewrite gets wrong (channel Slices) become equivalent fixed 1x1
   Convs; the rewritten graph is checked against the model with ONNX Runtime before converting;
2. onnx2tf converts it (NCHW -> NHWC) to float32 and, with a representative dataset of demo frames of
   *training* scenes (never the held-out ones tests score), to full-integer INT8: int8 input and
   output, per-tensor quantisation;
3. the ONNX metadata (names, imgsz, stride, task) is appended as ``metadata.json`` in a zip member,
   as Ultralytics does, so the .tflite carries its class names.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
CALIBRATION_SEEDS = 1_700_000  # inside train.py's TRAIN_SEEDS, away from calibrate.py's 1,500,000..


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def fold_edge_channels(model: onnx.ModelProto) -> onnx.ModelProto:
    """The colour-edge stem (net.py) sums single channels of its Sobel output with Slice + Add on the
    channel axis, which onnx2tf's NCHW->NHWC rewrite gets wrong (it slices width). The same sums as
    one fixed 1x1 Conv: identical arithmetic, a layer every converter knows."""
    graph = model.graph
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}

    def channels(name: str) -> tuple[str, list[int]] | None:
        node = producer.get(name)
        if node is None:
            return None
        if node.op_type == "Add":
            parts = [channels(i) for i in node.input]
            if None in parts or len({p[0] for p in parts}) != 1:  # type: ignore[index]
                return None
            return parts[0][0], [c for p in parts for c in p[1]]  # type: ignore[index]
        if node.op_type == "Slice" and len(node.input) >= 4:
            start, end, axes = (consts.get(i) for i in node.input[1:4])
            steps = consts.get(node.input[4]) if len(node.input) > 4 else np.array([1])
            if None in (start, end, axes, steps) or axes.tolist() != [1] or steps.tolist() != [1]:
                return None
            return node.input[0], list(range(int(start[0]), int(end[0])))
        return None

    for concat in [n for n in graph.node if n.op_type == "Concat"]:
        found = [(i, channels(name)) for i, name in enumerate(concat.input)]
        sums = [(i, c) for i, c in found if c is not None]
        if len(sums) < 2 or len({c[0] for _, c in sums}) != 1:
            continue
        source = sums[0][1][0]
        width = max(ch for _, c in sums for ch in c[1]) + 1
        weight = np.zeros((len(sums), width, 1, 1), np.float32)
        for k, (_, (_, chans)) in enumerate(sums):
            for ch in chans:
                weight[k, ch, 0, 0] += 1.0
        graph.initializer.append(numpy_helper.from_array(weight, "edge_sum_w"))
        graph.node.insert(list(graph.node).index(concat),
                          helper.make_node("Conv", [source, "edge_sum_w"], ["edge_sums"], kernel_shape=[1, 1]))  # fmt: skip
        first = sums[0][0]
        kept = [name for i, name in enumerate(concat.input) if i not in {j for j, _ in sums}]
        concat.input[:] = kept[:first] + ["edge_sums"] + kept[first:]
    return _prune(model)


def convertible_head(model: onnx.ModelProto, h: int, w: int) -> onnx.ModelProto:
    """The decode after the head (net.py: flatten to ``[1, 4+nc, N]``, then channel Slices, grid Add,
    Exp, calibration, Sigmoid on the 3-D tensor) rewritten on the 4-D head with fixed 1x1 Convs, which
    onnx2tf converts faithfully (its NCHW->NHWC rewrite of 3-D channel Slices does not), and with the
    boxes divided by the input size as Ultralytics' TFLite head does. The result is checked against
    the original with ONNX Runtime in :func:`check_same`."""
    graph = model.graph
    consts = _constants(graph)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    reshape = next(n for n in graph.node if n.op_type == "Reshape" and n.input[0] in shapes
                   and len(shapes[n.input[0]]) == 4)  # fmt: skip
    head = reshape.input[0]
    _, rows, gh, gw = shapes[head]
    nc = rows - 4
    grid = next(v for k, v in consts.items() if v.shape == (1, 2, gh * gw)).reshape(1, 2, gh, gw)
    stride = float(next(v for k, v in consts.items() if k.startswith("/Constant_8")))
    a, b = float(consts["calibration_a"]), float(consts["calibration_b"])
    norm = np.array([1.0 / w, 1.0 / h], np.float32).reshape(1, 2, 1, 1)
    w_xy = np.zeros((2, rows, 1, 1), np.float32)
    w_xy[0, 0], w_xy[1, 1] = stride / w, stride / h
    w_wh = np.zeros((2, rows, 1, 1), np.float32)
    w_wh[0, 2], w_wh[1, 3] = 1.0, 1.0
    w_cls = np.zeros((nc, rows, 1, 1), np.float32)
    for i in range(nc):
        w_cls[i, 4 + i] = a
    tensors = {
        "dec_w_xy": w_xy, "dec_grid": (grid * norm).astype(np.float32), "dec_w_wh": w_wh,
        "dec_wh_scale": (stride * norm).astype(np.float32), "dec_w_cls": w_cls,
        "dec_b_cls": np.full(nc, b, np.float32), "dec_shape": np.array([1, rows, gh * gw], np.int64),
    }  # fmt: skip
    out = graph.output[0].name
    nodes = [
        helper.make_node("Conv", [head, "dec_w_xy"], ["dec_xy_raw"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["dec_xy_raw", "dec_grid"], ["dec_xy"]),
        helper.make_node("Conv", [head, "dec_w_wh"], ["dec_wh_raw"], kernel_shape=[1, 1]),
        helper.make_node("Exp", ["dec_wh_raw"], ["dec_wh_exp"]),
        helper.make_node("Mul", ["dec_wh_exp", "dec_wh_scale"], ["dec_wh"]),
        helper.make_node("Conv", [head, "dec_w_cls", "dec_b_cls"], ["dec_logit"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["dec_logit"], ["dec_cls"]),
        helper.make_node("Concat", ["dec_xy", "dec_wh", "dec_cls"], ["dec_all"], axis=1),
        helper.make_node("Reshape", ["dec_all", "dec_shape"], [out]),
    ]
    keep = [n for n in graph.node if out not in n.output]
    del graph.node[:]
    graph.node.extend(keep + nodes)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in tensors.items())
    return _prune(model)


def _prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes and initialisers nothing reads any more."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    unused = [i for i in graph.initializer if i.name not in needed]
    for i in unused:
        graph.initializer.remove(i)
    onnx.checker.check_model(model)
    return model


def check_same(
    original: onnx.ModelProto, rewritten: onnx.ModelProto, frames: np.ndarray, h: int, w: int
) -> None:
    """The rewritten graph computes the original's output with the boxes divided by the input size."""
    import onnxruntime as ort

    x = np.ascontiguousarray(frames[:4].transpose(0, 3, 1, 2))
    scale = np.ones((1, original.graph.output[0].type.tensor_type.shape.dim[1].dim_value, 1), np.float32)
    scale[0, [0, 2]], scale[0, [1, 3]] = 1.0 / w, 1.0 / h
    runs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        for m in (original, rewritten)
    ]
    for frame in x:
        ref, new = (s.run(None, {"images": frame[None]})[0] for s in runs)
        err = float(np.abs(ref * scale - new).max())
        if err > 1e-4:
            raise SystemExit(f"tflite.py: the rewritten graph differs from the model by {err}")


def representative_frames(count: int, h: int, w: int) -> np.ndarray:
    """``count`` demo frames of training scenes, letterboxed as the agent does, NHWC float32 0..1."""
    from evaluate import held_out_frame  # a sibling script, as calibrate.py imports it

    from agent.inference.preprocess import preprocess

    frames = []
    for seed in range(CALIBRATION_SEEDS, CALIBRATION_SEEDS + count):
        _, frame, _, _ = held_out_frame(seed)
        tensor, _ = preprocess(frame, (h, w), np.dtype(np.float32))
        frames.append(tensor[0].transpose(1, 2, 0))
    return np.stack(frames).astype(np.float32)


def sample_frames(count: int) -> np.ndarray:
    """``count`` demo frames at 128x128, NHWC float32 0..1: the shape of onnx2tf's own sample data."""
    import cv2
    from evaluate import held_out_frame

    out = []
    for seed in range(CALIBRATION_SEEDS - count, CALIBRATION_SEEDS):
        _, frame, _, _ = held_out_frame(seed)
        rgb = cv2.cvtColor(cv2.resize(frame, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        out.append(rgb.astype(np.float32) / 255.0)
    return np.stack(out)


def add_metadata(tflite: Path, meta: dict[str, str]) -> None:
    """Ultralytics' layout: the metadata dict as JSON in a ``metadata.json`` zip member after the
    flatbuffer (the file stays a valid flatbuffer: LiteRT ignores what follows)."""
    data: dict[str, object] = {}
    for key, value in meta.items():
        try:
            data[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            data[key] = value
    if isinstance(data.get("names"), dict):
        data["names"] = {str(k): v for k, v in data["names"].items()}  # type: ignore[union-attr]
    with zipfile.ZipFile(tflite, "a", zipfile.ZIP_DEFLATED) as zf:
        member = zipfile.ZipInfo("metadata.json", date_time=(1980, 1, 1, 0, 0, 0))  # same bytes each run
        zf.writestr(member, json.dumps(data, indent=2), compress_type=zipfile.ZIP_DEFLATED)


def classifier_onnx(path: Path) -> Path:
    """A tiny image classifier (``[1, 3, 32, 32]`` -> ``[1, 10]``): the .tflite tests push to see a
    model that is not a detector refused (packaging/demo-model/tflite/classifier.tflite)."""
    rng = np.random.default_rng(0)
    conv = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "conv_w")
    fc = numpy_helper.from_array(rng.standard_normal((8, 10)).astype(np.float32), "fc_w")
    nodes = [
        helper.make_node("Conv", ["images", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 10])],
        [conv, fc],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, default=REPO / "agent/assets/demo.onnx")
    parser.add_argument("--out", type=Path, default=REPO / "agent/assets")
    parser.add_argument("--frames", type=int, default=200, help="representative frames for INT8")
    parser.add_argument("--quant-type", choices=("per-tensor", "per-channel"), default="per-tensor",
                        help="INT8 weight quantisation (per-tensor: what the Edge TPU compiler takes)")  # fmt: skip
    parser.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8",
                        help="the INT8 file's input and output type (packaging/demo-model/tflite/demo_uint8.tflite: uint8)")  # fmt: skip
    parser.add_argument("--classifier", type=lambda s: Path(s) if s else None, default=REPO / "packaging/demo-model/tflite/classifier.tflite",
                        help="where the tests' not-a-detector .tflite goes (empty: not made)")  # fmt: skip
    args = parser.parse_args(argv)

    import onnx2tf
    import onnx2tf.onnx2tf as o2t

    # onnx2tf fetches 20 sample photos from the network to compare its output with the ONNX model's;
    # demo frames of training scenes stand in (offline, and the pictures the model is made for).
    o2t.download_test_image_data = lambda: sample_frames(20)

    model = onnx.load(str(args.onnx))
    meta = {p.key: p.value for p in model.metadata_props}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    h, w = dims[2].dim_value, dims[3].dim_value
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "demo.onnx"
        calibration = representative_frames(args.frames, h, w)
        rewritten = convertible_head(fold_edge_channels(onnx.load(str(args.onnx))), h, w)
        check_same(model, rewritten, calibration, h, w)
        onnx.save(rewritten, str(src))
        calib = tmp / "calib.npy"
        np.save(calib, calibration)
        onnx2tf.convert(
            input_onnx_file_path=str(src),
            output_folder_path=str(tmp / "tf"),
            not_use_onnxsim=True,
            verbosity="error",
            output_integer_quantized_tflite=True,
            quant_type=args.quant_type,
            input_quant_dtype=args.io_dtype,
            output_quant_dtype=args.io_dtype,
            custom_input_op_name_np_data_path=[["images", str(calib), [[[[0, 0, 0]]]], [[[[1, 1, 1]]]]]],
            output_signaturedefs=True,
            disable_group_convolution=True,
            enable_batchmatmul_unfold=True,
        )
        for made, name in (("demo_float32.tflite", "demo_float32.tflite"),
                           ("demo_full_integer_quant.tflite", "demo_int8.tflite")):  # fmt: skip
            dest = args.out / name
            shutil.copyfile(tmp / "tf" / made, dest)
            add_metadata(dest, meta)
            print(f"{dest}: {dest.stat().st_size} bytes")
        if args.classifier:
            onnx2tf.convert(
                input_onnx_file_path=str(classifier_onnx(tmp / "classifier.onnx")),
                output_folder_path=str(tmp / "cls"),
                not_use_onnxsim=True,
                verbosity="error",
            )
            shutil.copyfile(tmp / "cls" / "classifier_float32.tflite", args.classifier)
            print(f"{args.classifier}: {args.classifier.stat().st_size} bytes")


if __name__ == "__main__":
    main()
