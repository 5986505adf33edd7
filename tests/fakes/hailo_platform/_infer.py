"""FAKE HailoRT InferModel API (tests only; see the package docstring).

``ConfiguredInferModel.run`` reads the uint8 NHWC input buffer, runs the HEF's embedded ONNX detector
with ONNX Runtime, decodes and suppresses with the fake's own NMS (:func:`by_class_frame`, written from
HailoRT's documented output format and sharing no code with the agent's postprocess), and writes the raw HAILO_NMS_BY_CLASS frame into the output buffer: for each class a float32 count, then
that many ``[y_min, x_min, y_max, x_max, score]`` normalised to the input, padded to
``max_bboxes_per_class``. ``get_buffer()`` parses it back into per-class arrays as HailoRT's wrapper does.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np

import hailo_platform as _pkg
from hailo_platform import HEF, FormatOrder, FormatType, HailoRTException, HailoRTHEFNotCompatibleWithDevice


class InferModel:
    class InferStream:
        def __init__(self, name: str, shape: tuple[int, ...], order: FormatOrder, ftype: FormatType) -> None:
            self._name, self._shape = name, tuple(shape)
            self._format = SimpleNamespace(order=order, type=ftype)

        @property
        def name(self) -> str:
            return self._name

        @property
        def shape(self) -> tuple[int, ...]:
            return self._shape

        @property
        def format(self) -> SimpleNamespace:
            return self._format

        @property
        def is_nms(self) -> bool:
            return self._format.order == FormatOrder.HAILO_NMS_BY_CLASS

        def set_format_type(self, type: FormatType) -> None:  # noqa: A002 - HailoRT's name
            self._format.type = FormatType(type)

    def __init__(self, hef: HEF, hef_path: str) -> None:
        self._hef, self._hef_path = hef, hef_path
        i, o = hef.header["input"], hef.header["output"]
        self._input = self.InferStream(i["name"], tuple(i["shape"]), FormatOrder.NHWC, FormatType.UINT8)
        frame = o["classes"] * (1 + 5 * o["max_bboxes_per_class"])
        self._output = self.InferStream(
            o["name"], (frame,), FormatOrder.HAILO_NMS_BY_CLASS, FormatType.FLOAT32
        )

    @property
    def hef(self) -> HEF:
        return self._hef

    @property
    def input_names(self) -> list[str]:
        return [self._input.name]

    @property
    def output_names(self) -> list[str]:
        return [self._output.name]

    def input(self, name: str = "") -> InferModel.InferStream:
        if name not in ("", self._input.name):
            raise HailoRTException(f"libhailort failed with error: 61 (HAILO_NOT_FOUND) for input {name}")
        return self._input

    def output(self, name: str = "") -> InferModel.InferStream:
        if name not in ("", self._output.name):
            raise HailoRTException(f"libhailort failed with error: 61 (HAILO_NOT_FOUND) for output {name}")
        return self._output

    def configure(self) -> ConfiguredInferModel:
        if self._hef.header["arch"] != _pkg.FAKE_ARCH:
            raise HailoRTHEFNotCompatibleWithDevice(
                "HEF file is not compatible with device. See hailort.log for more information"
            )
        return ConfiguredInferModel(self)


class _Stream:
    def __init__(self, nms: dict[str, Any] | None = None) -> None:
        self._buffer: np.ndarray | None = None
        self._nms = nms

    def set_buffer(self, buffer: np.ndarray) -> None:
        if not buffer.flags.c_contiguous:
            raise HailoRTException("Buffer must be C_CONTIGUOUS")
        self._buffer = buffer

    def get_buffer(self, tf_format: bool | None = False) -> Any:
        if self._nms is None or tf_format is None:
            return self._buffer
        raw, per_class, offset = self._buffer.reshape(-1), [], 0
        for _ in range(self._nms["classes"]):
            count = int(raw[offset])
            per_class.append(raw[offset + 1 : offset + 1 + 5 * count].reshape(count, 5).copy())
            offset += 1 + 5 * self._nms["max_bboxes_per_class"]
        return per_class


class Bindings:
    def __init__(self, model: InferModel) -> None:
        self._model = model
        self._input = _Stream()
        self._output = _Stream(model.hef.header["output"])

    def input(self, name: str = "") -> _Stream:
        self._model.input(name)
        return self._input

    def output(self, name: str = "") -> _Stream:
        self._model.output(name)
        return self._output


class ConfiguredInferModel:
    def __init__(self, model: InferModel) -> None:
        self._model = model
        self._session: Any = None
        self._lock = threading.Lock()
        self.shut_down = False

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *args: object) -> None:
        self.shutdown()

    def create_bindings(
        self, input_buffers: dict | None = None, output_buffers: dict | None = None
    ) -> Bindings:
        bindings = Bindings(self._model)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def run(self, bindings: list[Bindings], timeout: int) -> None:
        if self.shut_down:
            raise HailoRTException("libhailort failed with error: 8 (HAILO_INVALID_OPERATION)")
        for b in bindings:
            self._infer(b)

    def shutdown(self) -> None:
        self.shut_down = True

    def _infer(self, b: Bindings) -> None:
        model, head = self._model, self._model.hef.header["output"]
        image, out = b._input._buffer, b._output._buffer
        h, w, c = model.input().shape
        if image is None or out is None:
            raise HailoRTException("libhailort failed with error: 2 (HAILO_INVALID_ARGUMENT): buffer not set")
        if image.dtype != np.uint8 or image.shape != (h, w, c):
            raise HailoRTException(
                f"libhailort failed with error: 2 (HAILO_INVALID_ARGUMENT): input {image.shape}"
            )
        with self._lock:
            if self._session is None:
                import onnxruntime

                self._session = onnxruntime.InferenceSession(
                    model.hef.onnx, providers=["CPUExecutionProvider"]
                )
            tensor = (image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).astype(np.float32)
            raw = self._session.run(None, {self._session.get_inputs()[0].name: tensor})[0]
        out.reshape(-1)[:] = by_class_frame(raw[0], head, (h, w))


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    y1 = np.maximum(box[0], others[:, 0])
    x1 = np.maximum(box[1], others[:, 1])
    y2 = np.minimum(box[2], others[:, 2])
    x2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def by_class_frame(raw: np.ndarray, head: dict[str, Any], hw: tuple[int, int]) -> np.ndarray:
    """The fake chip's NMS, written from HailoRT's documented HAILO_NMS_BY_CLASS output and nothing of
    the agent's: ``raw`` is the detector head ``[4 + nc, N]`` (centre x, centre y, width, height in
    input pixels, then one score per class). For each class on its own: candidates scoring at least
    ``score_threshold``, best first, each kept unless it overlaps a kept one by more than
    ``iou_threshold``, at most ``max_bboxes_per_class``; written as a float32 count followed by that many
    ``[y_min, x_min, y_max, x_max, score]`` normalised to the input height and width, and zero padding
    up to ``max_bboxes_per_class`` entries per class."""
    nc, per = head["classes"], head["max_bboxes_per_class"]
    h, w = hw
    cx, cy, bw, bh = raw[0], raw[1], raw[2], raw[3]
    yxyx = np.stack([(cy - bh / 2) / h, (cx - bw / 2) / w, (cy + bh / 2) / h, (cx + bw / 2) / w], axis=1)
    yxyx = np.clip(yxyx, 0.0, 1.0).astype(np.float32)
    frame = np.zeros(nc * (1 + 5 * per), np.float32)
    for cls in range(nc):
        scores = raw[4 + cls]
        idx = np.flatnonzero(scores >= head["score_threshold"])
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        kept: list[int] = []
        for i in idx:
            if len(kept) == per:
                break
            if kept and (_iou(yxyx[i], yxyx[kept]) > head["iou_threshold"]).any():
                continue
            kept.append(int(i))
        base = cls * (1 + 5 * per)
        frame[base] = len(kept)
        for j, i in enumerate(kept):
            frame[base + 1 + 5 * j : base + 6 + 5 * j] = [*yxyx[i], scores[i]]
    return frame
