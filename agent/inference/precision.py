"""What precision a model file runs at, read from the file and its fingerprint, never from its input.

INT8 QDQ models and TensorRT FP16/INT8 engines all take float32 input, so the input dtype says nothing
about the arithmetic inside. The engine's ``fingerprint.json`` says what it was built at; an ONNX graph
says it through its operators (QuantizeLinear/DequantizeLinear or the QLinear* kernels); a HEF is 8-bit
by construction (Hailo's Dataflow Compiler quantises when it compiles).
"""

from __future__ import annotations

from pathlib import Path

from agent.core.errors import ModelError

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Operators that only exist in quantised graphs (ONNX Runtime's static quantisation in QOperator format).
QUANTISED_OPS = QDQ_OPS | {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def onnx_op_types(path: Path) -> set[str]:
    """The operator types in an ONNX model's graph and its functions. The weights are not read
    (``load_external_data=False``): a model whose tensors live in an external data file, or a big one,
    costs only its graph. ModelError when the file is not an ONNX model."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise ModelError(f"{Path(path).name} is not a readable ONNX model ({err}): export it again") from None
    ops = {node.op_type for node in model.graph.node}
    for function in model.functions:
        ops |= {node.op_type for node in function.node}
    return ops


def is_qdq(path: Path) -> bool:
    """True when the graph holds QuantizeLinear/DequantizeLinear nodes (explicit quantisation)."""
    return bool(QDQ_OPS & onnx_op_types(path))


def model_precision(path: Path, input_dtype: str | None = None) -> str:
    """``fp32`` / ``fp16`` / ``int8`` for the model file at ``path``: the engine fingerprint beside it
    when there is one, else what the file itself says."""
    from agent.engines.fingerprint import read_fingerprint

    path = Path(path)
    try:
        built = read_fingerprint(path)
    except ModelError:
        built = None
    if built is not None:
        return built.precision
    if path.suffix == ".hef":
        return "int8"
    if path.suffix == ".onnx":
        try:
            if QUANTISED_OPS & onnx_op_types(path):
                return "int8"
        except ModelError:
            pass
    return "fp16" if input_dtype == "float16" else "fp32"
