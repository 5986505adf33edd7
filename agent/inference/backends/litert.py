"""LiteRT (TFLite) backend: ``.tflite`` models on the CPU (XNNPACK) or a Coral Edge TPU.

``ai_edge_litert`` (LiteRT, the successor of ``tflite-runtime``) is imported inside the functions below,
never at module top, so the registry can list this backend, and say what is missing, on a machine
without it.

The Detector feeds every backend ``[1, 3, H, W]`` float32 in 0..1. A TFLite detector takes
``[1, H, W, 3]`` (NHWC), float32 or full-integer uint8/int8; this backend reports its input as
``[1, 3, H, W]`` float32 and does the rest itself:

- the frame is transposed to NHWC and, for an integer input, quantised with the input's scale and
  zero point (``q = round(x / scale) + zero_point``);
- every integer output is dequantised with its own scale and zero point (``(q - zero_point) * scale``);
  an integer output without them cannot be read and the model is refused at load;
- Ultralytics' TFLite head divides the boxes by the input size (so boxes and scores share one
  quantisation range) in ``[1, 4+nc, N]`` (xywh rows), and in end-to-end ``[1, K, 6]`` (xyxy columns)
  of the older onnx2tf (NHWC) exports; litert-torch (NCHW) end-to-end exports are in pixels already.
  The boxes are multiplied back here by the same rule as Ultralytics' own LiteRT loader. An NCHW
  input (litert-torch) is fed as it is.

Class names: Ultralytics appends its metadata to the .tflite as a zip member (``metadata.json``; older
releases stored a Python dict repr through tflite-support, newer ones JSON; a ``metadata.yaml`` is read
too), since a flatbuffer followed by a zip is still a valid flatbuffer. Without it the Detector falls
back to a labels file beside the model.

Coral Edge TPU: an ``*_edgetpu.tflite`` model (compiled off-device by ``edgetpu_compiler``) holds one
``edgetpu-custom-op`` that only libedgetpu's delegate can run; see :mod:`agent.inference.backends.edgetpu`.
"""

from __future__ import annotations

import ast
import ctypes
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import BackendUnavailable, ModelError
from agent.inference.backends.base import Backend, TensorSpec
from agent.inference.backends.edgetpu import EDGETPU_OP, delegate_library, edgetpu_status
from agent.inference.backends.onnxruntime import default_threads
from fieldtui.protocol import EngineFingerprint, RuntimeIdentity

INSTALL_HINT = "pip install 'fieldtui[agent,litert]' (the ai-edge-litert wheel: Linux x86-64/aarch64, macOS)"
BUILD_NOTE = (
    "a .tflite is converted off-device (TensorFlow's converter or onnx2tf; an INT8 one needs a "
    "representative dataset and TensorFlow, which a device does not carry; an Edge TPU one is then "
    "compiled from the full-integer INT8 .tflite by edgetpu_compiler, on a Linux x86-64 host only, "
    "which writes model_int8_edgetpu.tflite): convert it there, then push the .tflite (for a Coral "
    "the *_edgetpu.tflite): fieldtui push HOST model_int8_edgetpu.tflite --version V"
)
METADATA_MEMBERS = ("metadata.json", "metadata.yaml", "metadata.yml", "metadata.txt")
_INT_TYPES = (np.uint8, np.int8, np.int16)


def _import_litert() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError as err:
        raise BackendUnavailable(f"ai-edge-litert not importable ({err}): {INSTALL_HINT}") from None
    return interpreter


def _litert_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("ai-edge-litert")
    except PackageNotFoundError:
        return None


def _parse_metadata_text(name: str, text: str) -> dict[str, Any] | None:
    """A metadata member as a dict: JSON, a Python dict repr, or (when PyYAML is there) YAML."""
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    if name.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            return None
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
        return value if isinstance(value, dict) else None
    return None


def tflite_metadata(path: Path) -> dict[str, str]:
    """The exporter's metadata zipped into a .tflite, as the ONNX metadata map's strings (``names`` a
    dict repr with int keys, ``imgsz`` ``"[640, 640]"``, booleans ``"True"``): {} when there is none."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.namelist()
            chosen = next((m for m in METADATA_MEMBERS if m in members), None)
            if chosen is None:
                return {}
            text = zf.read(chosen).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError, KeyError, ValueError, EOFError):
        return {}
    data = _parse_metadata_text(chosen, text)
    if not data:
        return {}
    meta: dict[str, str] = {}
    for key, value in data.items():
        if key == "names" and isinstance(value, dict):
            try:
                value = {int(k): str(v) for k, v in value.items()}
            except (TypeError, ValueError):
                continue
        elif key == "names" and isinstance(value, list):
            value = {i: str(v) for i, v in enumerate(value)}
        meta[str(key)] = (
            value if isinstance(value, str) else repr(value) if isinstance(value, dict) else str(value)
        )
    return meta


def is_edgetpu_model(path: Path, content: bytes) -> bool:
    return path.name.endswith("_edgetpu.tflite") or EDGETPU_OP.encode() in content


def _precision_of(path: Path) -> str:
    """ "int8" (integer input, or an Edge TPU model), "fp16" (float16 weights) or "fp32", read from the
    file (a stored model is always named model.tflite); from the name when LiteRT cannot read it."""
    try:
        content = path.read_bytes()
        if EDGETPU_OP.encode() in content:
            return "int8"
        interp = _import_litert().Interpreter(model_content=content)
        if np.dtype(interp.get_input_details()[0]["dtype"]) in _INT_TYPES:
            return "int8"
        if any(np.dtype(d["dtype"]) == np.float16 for d in interp.get_tensor_details()):
            return "fp16"
        return "fp32"
    except Exception:  # LiteRT's own errors: unreadable here, Detector.load will say why
        stem = path.stem
        return (
            "int8"
            if ("_int8" in stem or "_full_integer_quant" in stem)
            else "fp16"
            if "_float16" in stem
            else "fp32"
        )


def _quant(detail: dict[str, Any]) -> tuple[float, int]:
    scale, zero = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero)


class LiteRtBackend(Backend):
    """A LiteRT ``Interpreter`` with XNNPACK on the CPU, or the Edge TPU delegate for an Edge TPU model."""

    key = "litert"
    model_format = "tflite"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            _import_litert()
        except BackendUnavailable as err:
            return False, str(err)
        tpu = edgetpu_status()
        return (
            True,
            f"ai-edge-litert {_litert_version() or '?'} ready on CPU (XNNPACK); Edge TPU: {tpu.reason}",
        )

    @classmethod
    def version(cls) -> str | None:
        try:
            _import_litert()
        except BackendUnavailable:
            return None
        return _litert_version()

    @classmethod
    def providers(cls) -> list[str]:
        try:
            _import_litert()
        except BackendUnavailable:
            return []
        return (["EdgeTPU"] if edgetpu_status().ok else []) + ["XNNPACK"]

    @classmethod
    def identity(cls) -> RuntimeIdentity:
        ok, reason = cls.available()
        return RuntimeIdentity(
            runtime=cls.key,
            available=ok,
            reason=reason,
            runtime_version=cls.version(),
            device="Coral Edge TPU" if edgetpu_status().ok else None,
            can_build=False,
            build_note=BUILD_NOTE,
        )

    @classmethod
    def model_for_precision(cls, path: Path, precision: str) -> tuple[Path | None, str | None]:
        """The .tflite that runs ``path`` at ``precision``: ``path`` itself when it is a .tflite of that
        precision, else the converted file beside an ONNX model under the names Ultralytics' export and
        packaging/demo-model/tflite.py give it (``<stem>_float32.tflite``, ``<stem>_int8.tflite``,
        ``<stem>_full_integer_quant.tflite``, ``<stem>_float16.tflite``)."""
        path = Path(path)
        suffixes = {"fp32": ("_float32",), "fp16": ("_float16",), "int8": ("_int8", "_full_integer_quant")}
        if precision not in suffixes:
            return None, f"{precision} on litert: it runs fp32, fp16 and int8 .tflite files"
        if path.suffix == ".tflite":
            made = _precision_of(path)
            if made == precision:
                return path, None
            return (
                None,
                f"{precision} on litert: {path.name} is the {made} conversion; push the {precision} one",
            )
        for suffix in suffixes[precision]:
            candidate = path.with_name(path.stem + suffix + ".tflite")
            if candidate.is_file():
                return candidate, None
        return None, (
            f"{precision} on litert: no {path.stem}{suffixes[precision][0]}.tflite beside {path.name}; {BUILD_NOTE}"
        )

    @classmethod
    def build_engine(cls, onnx_path: Path, out_path: Path, **_: Any) -> EngineFingerprint:
        from agent.core.errors import AgentError

        raise AgentError(f"litert cannot build engines on this device: {BUILD_NOTE}", status=422)

    def __init__(
        self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        litert = _import_litert()
        self.path = Path(path)
        name = self.path.name
        try:
            content = self.path.read_bytes()
        except OSError as err:
            raise ModelError(f"cannot read model file {name}: {err.strerror or err}") from None
        if len(content) < 8 or content[4:8] != b"TFL3":
            raise ModelError(
                f"{name} is not a TFLite model (no TFL3 flatbuffer header): export it again "
                "(e.g. `yolo export format=tflite`) or copy it again if the transfer was cut short"
            )
        self.edgetpu = is_edgetpu_model(self.path, content)
        delegates = []
        if self.edgetpu:
            status = edgetpu_status()
            if not status.ok:
                raise ModelError(
                    f"{name} is an Edge TPU model and cannot run here: {status.reason}; "
                    "or push the plain (non-_edgetpu) .tflite to run it on the CPU"
                )
            library = delegate_library()
            try:
                # LiteRT's load_delegate half-builds a Delegate whose __del__ raises when the library
                # lacks the plugin entry points: check for them first.
                if not hasattr(ctypes.CDLL(library), "tflite_plugin_create_delegate"):
                    raise ValueError(
                        f"{library} has no tflite_plugin_create_delegate: not a delegate library"
                    )
                delegates.append(litert.load_delegate(library))
            except Exception as err:  # ValueError, OSError: LiteRT's and the loader's refusals
                raise ModelError(
                    f"{name} is an Edge TPU model but the Edge TPU delegate did not load ({err}); "
                    "reinstall libedgetpu1-std, check the device with `lsusb` (or /dev/apex_0) and replug it"
                ) from None
        try:
            interp = litert.Interpreter(
                model_content=content,
                num_threads=threads or default_threads(),
                experimental_delegates=delegates or None,
            )
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise ModelError(
                f"{name} is not a loadable TFLite model ({first}): export it again "
                "(e.g. `yolo export format=tflite`) or copy it again if the transfer was cut short"
            ) from None
        self._interp: Any = interp
        self._lock = threading.Lock()
        self.metadata = tflite_metadata(self.path)
        in_details = interp.get_input_details()
        self._out_details = interp.get_output_details()
        if len(in_details) != 1:
            self.inputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]))
                           for d in in_details]  # fmt: skip
            self.outputs = []
            return  # the Detector refuses a model with other than one input, with its own line
        self._in = in_details[0]
        shape = [int(x) for x in self._in["shape"]]
        signature = [int(x) for x in self._in.get("shape_signature", shape)]
        self._nhwc = len(shape) == 4 and shape[3] == 3 and shape[1] != 3
        if self._nhwc:
            n, h, w, c = (signature[i] if signature[i] > 0 else None for i in range(4))
            spec_shape: tuple[int | None, ...] = (n, c, h, w)
        else:
            spec_shape = tuple(d if d > 0 else None for d in signature)
        in_dtype = np.dtype(self._in["dtype"])
        self._in_quant = _quant(self._in) if in_dtype in _INT_TYPES else None
        if self._in_quant is not None and self._in_quant[0] == 0.0:
            raise ModelError(
                f"{name} input {self._in['name']} is {in_dtype} without quantisation parameters: "
                "re-export it as full-integer INT8 with a representative dataset (or as float32)"
            )
        # The Detector sees float32 in 0..1 whatever the model takes: quantising is done here.
        self.inputs = [TensorSpec(self._in["name"], spec_shape, np.dtype(np.float32))]
        self._out_quant: list[tuple[float, int] | None] = []
        for d in self._out_details:
            dtype = np.dtype(d["dtype"])
            if dtype in _INT_TYPES:
                scale, zero = _quant(d)
                if scale == 0.0:
                    raise ModelError(
                        f"{name} output {d['name']} is {dtype} without quantisation parameters, so "
                        "its values cannot be read: re-export it (full-integer INT8 with quantised "
                        "outputs, or float32 outputs)"
                    )
                self._out_quant.append((scale, zero))
            else:
                self._out_quant.append(None)
        self.outputs = [
            TensorSpec(d["name"], tuple(int(x) for x in d.get("shape_signature", d["shape"])),
                       np.dtype(np.float32) if q else np.dtype(d["dtype"]))
            for d, q in zip(self._out_details, self._out_quant, strict=True)
        ]  # fmt: skip
        # Boxes are normalised to the input in Ultralytics' TFLite head (metadata can say otherwise).
        self._normalised = str(self.metadata.get("normalized", "True")).strip().lower() != "false"
        self._end2end = {"true": True, "false": False}.get(
            str(self.metadata.get("end2end", "")).strip().lower()
        )

    def _quantise(self, x: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._in["dtype"])
        if self._in_quant is None:
            return x.astype(dtype, copy=False)
        scale, zero = self._in_quant
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)

    def _denormalise(self, out: np.ndarray, h: int, w: int) -> np.ndarray:
        """Ultralytics' LiteRT loader's rule: the raw head's xywh rows are always normalised; an
        end-to-end ``[1, K, 6]`` output is normalised in onnx2tf's NHWC exports but already in pixels
        in litert-torch's NCHW ones (Ultralytics' TFLite export since it moved to litert-torch)."""
        if out.ndim != 3:
            return out
        end2end = self._end2end if self._end2end is not None else out.shape[-1] == 6
        if end2end and not self._nhwc:
            return out
        out = np.array(out, dtype=np.float32, copy=True)
        if end2end:  # [1, K, 6]: x1 y1 x2 y2 score class
            out[:, :, [0, 2]] *= w
            out[:, :, [1, 3]] *= h
        else:  # [1, 4+nc, N]: x y w h rows
            out[:, [0, 2]] *= w
            out[:, [1, 3]] *= h
        return out

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            interp = self._interp
            if interp is None:
                raise ModelError(f"{self.path.name} was closed (the model was swapped or unloaded)")
            x = np.ascontiguousarray(tensor.transpose(0, 2, 3, 1)) if self._nhwc else tensor
            x = self._quantise(x)
            index = self._in["index"]
            if tuple(interp.get_input_details()[0]["shape"]) != x.shape:
                interp.resize_tensor_input(index, list(x.shape))  # a dynamic-size model
                interp.allocate_tensors()
            interp.set_tensor(index, x)
            interp.invoke()
            raw = [interp.get_tensor(d["index"]) for d in self._out_details]
        h, w = (x.shape[1], x.shape[2]) if self._nhwc else (x.shape[2], x.shape[3])
        outputs = []
        for i, (out, q) in enumerate(zip(raw, self._out_quant, strict=True)):
            value = (out.astype(np.float32) - q[1]) * q[0] if q else out
            if i == 0 and self._normalised:
                value = self._denormalise(value, h, w)
            outputs.append(value)
        return outputs

    def close(self) -> None:
        with self._lock:
            self._interp = None
