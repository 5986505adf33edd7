"""FAKE Coral Edge TPU delegate (libedgetpu) and a fake ``edgetpu_compiler``, for tests only: not Coral's
code, no Edge TPU.

- :func:`build` compiles libedgetpu_fake.c (beside this file) with the system C compiler into
  ``libedgetpu.so.1``: a real shared library that LiteRT's own ``load_delegate`` loads through the TFLite
  external-delegate ABI libedgetpu exports (``tflite_plugin_create_delegate`` /
  ``tflite_plugin_destroy_delegate``), whose delegate claims the ``edgetpu-custom-op`` nodes of a model
  (see the C file for what is real and what is not).
- :func:`compile_for_edgetpu` stands in for ``edgetpu_compiler``: from a full-integer INT8 .tflite it
  writes ``<stem>_edgetpu.tflite`` with the INT8 model's quantised input and output and, between them, one
  ``edgetpu-custom-op`` whose custom options (where the real compiler puts the TPU executable) hold the
  float32 .tflite the INT8 model was converted from. Without the delegate, LiteRT cannot run it
  ("Encountered unresolved custom op: edgetpu-custom-op"), as with a real Edge TPU model.
- :func:`run_compiled` is what the delegate's kernel calls to run that "executable": the float32 model,
  on LiteRT's Python interpreter in the same process, on the dequantised input.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

SOURCE = Path(__file__).with_name("libedgetpu_fake.c")
LIBRARY_NAME = "libedgetpu.so.1"
_interpreters: dict[bytes, Any] = {}


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(dest: Path) -> Path:
    """``dest/libedgetpu.so.1`` built from libedgetpu_fake.c; CalledProcessError with the compiler's
    output when it does not build."""
    cc = compiler()
    if cc is None:
        raise FileNotFoundError("no C compiler (cc or gcc) to build the fake libedgetpu")
    out = dest / LIBRARY_NAME
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(out), str(SOURCE), "-lm"],
                   check=True, capture_output=True, text=True)  # fmt: skip
    return out


def live_delegates(library: Path) -> int:
    """How many delegates the fake library has created and not yet destroyed."""
    return ctypes.c_int.in_dll(ctypes.CDLL(str(library)), "libedgetpu_fake_live_delegates").value


def _flatbuffer_only(path: Path) -> bytes:
    """The .tflite at ``path`` without the zip an exporter appends to it (read back through the schema)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
    builder = flatbuffers.Builder(path.stat().st_size + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def compile_for_edgetpu(int8_model: Path, float_model: Path, dest_dir: Path) -> Path:
    """The fake ``edgetpu_compiler int8_model``: ``dest_dir/<stem>_edgetpu.tflite`` (see the module
    docstring), keeping the exporter's zip metadata (class names) appended to the input model."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    source = schema.ModelT.InitFromObj(schema.Model.GetRootAs(int8_model.read_bytes(), 0))
    graph = source.subgraphs[0]
    [input_index], [output_index] = graph.inputs, graph.outputs
    tensors = [graph.tensors[input_index], graph.tensors[output_index]]
    for tensor in tensors:
        tensor.buffer = 0  # activations: no data of their own

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "edgetpu-custom-op"
    code.version = 1
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.customOptions = np.frombuffer(_flatbuffer_only(float_model), dtype=np.uint8)
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS

    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, [0], [1], [op]
    sub.name = graph.name
    model = schema.ModelT()
    model.version = source.version
    model.description = "fake edgetpu_compiler (tests/fakes/libedgetpu_fake)"
    model.operatorCodes, model.subgraphs, model.buffers = [code], [sub], [schema.BufferT()]

    builder = flatbuffers.Builder(float_model.stat().st_size + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = dest_dir / f"{int8_model.stem}_edgetpu.tflite"
    out.write_bytes(bytes(builder.Output()))
    try:
        with zipfile.ZipFile(int8_model) as src, zipfile.ZipFile(out, "a") as dst:
            for name in src.namelist():
                dst.writestr(name, src.read(name))
    except zipfile.BadZipFile:
        pass  # no metadata to carry
    return out


def run_compiled(program: int, program_size: int, x: int, n_in: int, y: int, n_out: int) -> int:
    """Called by the fake delegate's kernel (with the GIL): run the float32 .tflite at ``program`` on the
    ``n_in`` floats at ``x`` and write its ``n_out`` output floats at ``y``. 0 on success."""
    try:
        content = ctypes.string_at(program, program_size)
        interp = _interpreters.get(content)
        if interp is None:
            from ai_edge_litert.interpreter import Interpreter

            interp = _interpreters[content] = Interpreter(model_content=content, num_threads=1)
            interp.allocate_tensors()
        [i], [o] = interp.get_input_details(), interp.get_output_details()
        if int(np.prod(i["shape"])) != n_in or int(np.prod(o["shape"])) != n_out:
            raise ValueError(f"compiled program has I/O {i['shape']} -> {o['shape']}, not {n_in} -> {n_out}")
        inp = np.ctypeslib.as_array((ctypes.c_float * n_in).from_address(x))
        interp.set_tensor(i["index"], inp.reshape(i["shape"]).astype(i["dtype"]))
        interp.invoke()
        out = np.ctypeslib.as_array((ctypes.c_float * n_out).from_address(y))
        out[:] = interp.get_tensor(o["index"]).astype(np.float32).ravel()
        return 0
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return 1
