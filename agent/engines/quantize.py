"""The ONNX Runtime side of an engine rebuild: fixed shapes, INT8 static quantisation (QDQ), the
graph-optimised model saved to disk.

Steps, each writing a file into the build's work folder:

1. fix dynamic input shapes to the size the pipeline feeds (``make_input_shape_fixed``), so shape
   inference, calibration and TensorRT all see one static graph;
2. pre-process for quantisation (``quant_pre_process``: symbolic shape inference, ORT's basic fusions);
3. INT8: static quantisation, QDQ format, per-channel weights, calibrated (MinMax) on frames
   preprocessed exactly as the pipeline does (``Detector.preprocess``). Only Conv/MatMul/Gemm are
   quantised: around the detection head's element-wise ops (Sigmoid, Exp, Mul, Concat, Resize) Q/DQ
   pairs only add conversions with no INT8 kernel behind them, and cost agreement with FP32. Grouped
   and thin convolutions stay FP32 too (:func:`thin_convs`);
4. the graph optimised by ORT and saved (``SessionOptions.optimized_model_filepath``) at the
   *extended* level: the layout-specific transforms of the *all* level are redone at every load and
   would tie the file to this CPU's instruction set.

The QDQ model of step 3 is also what TensorRT builds INT8 engines from (explicit quantisation).
onnxruntime and onnx are imported inside the functions, as everywhere in the agent.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from agent.core.errors import ModelError

QUANTISED_OPS = ["Conv", "MatMul", "Gemm"]
THIN_CHANNELS = 8  # convolutions with fewer input channels per group stay FP32 (see thin_convs)

Progress = Callable[[float, str], None]


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def fix_shapes(src: Path, dst: Path, input_shape: Sequence[int]) -> None:
    """Write ``src`` to ``dst`` with its one input fixed at ``input_shape`` (a copy when already so)."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(src))
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise ModelError(f"{src.name} has {len(inputs)} inputs; an engine is built from a one-input detector")
    quantised = {"QuantizeLinear", "DequantizeLinear", "QLinearConv"} & {n.op_type for n in model.graph.node}
    if quantised:
        raise ModelError(
            f"{src.name} is already quantised ({sorted(quantised)[0]} nodes): build engines from the FP32 "
            "model (the version the engine was made from)"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if [d.dim_value for d in dims] == list(input_shape):
        shutil.copyfile(src, dst)
        return
    try:
        make_input_shape_fixed(model.graph, inputs[0].name, list(input_shape))
        fix_output_shapes(model)
    except Exception as err:  # noqa: BLE001 - onnx/ORT raise assorted types for graphs they cannot fix
        raise ModelError(
            f"cannot fix {src.name}'s input at {list(input_shape)} ({_first_line(err)}); "
            "re-export the model with a fixed input size (e.g. `yolo export format=onnx imgsz=640`)"
        ) from None
    onnx.save(model, str(dst))


def pre_process(src: Path, dst: Path) -> None:
    """``quant_pre_process``: shape inference and ORT's basic fusions, as quantisation expects."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"pre-processing {src.name} for quantisation failed ({_first_line(err)})") from None


def thin_convs(path: Path) -> list[str]:
    """Names of the convolutions kept in FP32: grouped ones and those with fewer than
    ``THIN_CHANNELS`` input channels per group (a stem on the RGB image). ONNX Runtime's CPU
    QLinearConv has no fast path for them: on the demo model (ORT 1.32, AVX2) its grouped stem conv
    took 20 ms quantised against 3.4 ms in FP32, and the 5-channel conv after it 4.5 ms against 2.5 ms,
    more than every other layer saved."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or not node.name:
            continue
        group = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        dims = weights.get(node.input[1]) if len(node.input) > 1 else None
        if group > 1 or (dims is not None and len(dims) > 1 and dims[1] < THIN_CHANNELS):
            names.append(node.name)
    return names


def quantize_int8(
    src: Path,
    dst: Path,
    tensors: Sequence[np.ndarray],
    *,
    input_name: str,
    check_cancelled: Callable[[], None],
    progress: Callable[[float], None],
) -> None:
    """Static INT8 QDQ quantisation of ``src`` calibrated on ``tensors`` (preprocessed frames).

    ``check_cancelled`` runs before every calibration batch; what it raises ends the build (the
    temporary calibration model lives in a temp folder that quantize_static removes either way)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not tensors:
        raise ModelError("no calibration frames: start the live source or give a folder of images")
    excluded = thin_convs(src)

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            check_cancelled()
            if self.i >= len(tensors):
                return None
            progress(self.i / len(tensors))
            tensor = tensors[self.i]
            self.i += 1
            return {input_name: tensor}

    try:
        quantize_static(
            str(src),
            str(dst),
            Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTISED_OPS,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
        )
    except ModelError:
        raise
    except Exception as err:
        if type(err).__name__ == "JobCancelled":
            raise
        raise ModelError(f"INT8 quantisation of {src.name} failed ({_first_line(err)})") from None


def save_optimised(src: Path, dst: Path) -> None:
    """Let ORT optimise ``src`` (extended level, CPU) and save the result at ``dst``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dst)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"ONNX Runtime cannot optimise {src.name} ({_first_line(err)})") from None
    if not dst.is_file():
        raise ModelError(f"ONNX Runtime did not write the optimised model for {src.name}")


def prepare(
    source: Path,
    work: Path,
    *,
    precision: str,
    input_shape: Sequence[int],
    input_name: str,
    calibration: Sequence[np.ndarray],
    check_cancelled: Callable[[], None],
    progress: Progress,
    log: Callable[[str], None],
) -> Path:
    """The ONNX model an engine is built from, written into ``work``: the fixed-shape model (fp32,
    fp16), or its INT8 QDQ quantisation calibrated on ``calibration`` (int8). Progress 0..0.7."""
    fixed = work / "fixed.onnx"
    progress(0.02, "fixing input shapes")
    fix_shapes(source, fixed, input_shape)
    log(f"input fixed at {list(input_shape)}")
    check_cancelled()
    if precision != "int8":
        return fixed
    progress(0.05, "pre-processing for quantisation")
    pre = work / "pre.onnx"
    pre_process(fixed, pre)
    log("pre-processed (shape inference, basic fusions)")
    check_cancelled()
    qdq = work / "qdq.onnx"
    quantize_int8(
        pre,
        qdq,
        calibration,
        input_name=input_name,
        check_cancelled=check_cancelled,
        progress=lambda f: progress(0.1 + 0.6 * f, f"calibrating on {len(calibration)} frames"),
    )
    log(f"INT8 QDQ per-channel, calibrated on {len(calibration)} frames ({', '.join(QUANTISED_OPS)})")
    check_cancelled()
    return qdq
