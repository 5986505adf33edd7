"""Frame -> model input: Ultralytics' letterbox, then RGB, /255, NCHW in the model's input dtype.

The letterbox is Ultralytics' ``LetterBox(auto=False, scaleup=True, center=True)`` step for step (same
rounding, same INTER_LINEAR resize, same 114 grey); with a ``stride`` it is ``LetterBox(auto=True)``,
the smallest stride-multiple rectangle Ultralytics' predictor feeds a dynamic-size model. So a model
trained and validated with Ultralytics sees exactly the pixels it saw there. :class:`Letterbox` remembers the scale and padding so boxes can be
mapped back to the original image the way Ultralytics' ``scale_boxes`` does.

:func:`letterbox` returns the padded uint8 image (for drawing and for checking against Ultralytics);
:func:`preprocess`, the per-frame path, produces the identical tensor without building that image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image of ``shape`` (h, w) was fitted into ``new_shape`` (h, w).

    ``pad`` is (dw, dh): the left and top offsets, in model-input pixels, at which the resized image
    sits inside the padded canvas (the integers Ultralytics' ``scale_boxes`` subtracts).
    """

    ratio: float
    pad: tuple[float, float]
    shape: tuple[int, int]
    new_shape: tuple[int, int]

    def unmap(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes x1,y1,x2,y2 in model-input pixels -> float32 boxes in original pixels, clipped."""
        out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
        dw, dh = self.pad
        out -= np.array([dw, dh, dw, dh], dtype=np.float32)
        out /= np.float32(self.ratio)
        h, w = self.shape
        np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        return out


@dataclass(frozen=True, slots=True)
class _Fit:
    ratio: float
    size: tuple[int, int]  # resized (w, h), cv2 order
    top: int
    bottom: int
    left: int
    right: int


def _fit(
    shape: tuple[int, int], new_shape: int | tuple[int, int], stride: int | None = None
) -> tuple[_Fit, tuple[int, int]]:
    """Ultralytics' letterbox arithmetic, and the (h, w) target (``stride``: ``auto`` padding)."""
    new_h, new_w = (new_shape, new_shape) if isinstance(new_shape, int) else map(int, new_shape)
    h, w = shape
    r = min(new_h / h, new_w / w)
    # Python's round (half to even) on purpose: it is what Ultralytics uses. At least one pixel, though:
    # a sliver (a 1 x 640 crop) would round to 0 and make OpenCV assert, where Ultralytics would crash.
    unpad_w, unpad_h = max(1, int(round(w * r))), max(1, int(round(h * r)))
    pad_w, pad_h = new_w - unpad_w, new_h - unpad_h
    if stride:  # auto: pad only up to the next multiple of the stride
        pad_w, pad_h = pad_w % stride, pad_h % stride
        new_h, new_w = unpad_h + pad_h, unpad_w + pad_w
    dw, dh = pad_w / 2, pad_h / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    return _Fit(r, (unpad_w, unpad_h), top, bottom, left, right), (new_h, new_w)


def _resized(
    image: np.ndarray, new_shape: int | tuple[int, int], stride: int | None = None
) -> tuple[np.ndarray, _Fit, Letterbox]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    image = np.ascontiguousarray(image)  # a cropped or flipped view would trip OpenCV; no-op otherwise
    h, w = image.shape[:2]
    fit, target = _fit((h, w), new_shape, stride)
    if (w, h) != fit.size:
        image = cv2.resize(image, fit.size, interpolation=cv2.INTER_LINEAR)
    lb = Letterbox(ratio=fit.ratio, pad=(float(fit.left), float(fit.top)), shape=(h, w), new_shape=target)
    return image, fit, lb


def letterbox(
    image: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    color: int = PAD_VALUE,
    *,
    stride: int | None = None,
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad to ``new_shape`` (h, w), centred, like Ultralytics; with
    ``stride``, pad only to the next multiple of it (Ultralytics' ``auto=True``)."""
    resized, fit, lb = _resized(image, new_shape, stride)
    padded = cv2.copyMakeBorder(
        resized, fit.top, fit.bottom, fit.left, fit.right, cv2.BORDER_CONSTANT, value=(color, color, color)
    )
    return padded, lb


@lru_cache(maxsize=4)
def _unit_table(dtype: np.dtype) -> np.ndarray:
    # x / 255 for every uint8 value, computed in float32 and rounded once to the target dtype: the same
    # numbers as ``img.astype(float32) / 255`` (then ``.astype(float16)``), looked up instead of computed.
    table = np.arange(256, dtype=np.float32) / np.float32(255)
    return table.astype(dtype)


def _check_dtype(dtype: np.dtype | type) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"model input dtype {dtype} is not supported (float32 or float16)")
    return dtype


def _write_planes(bgr: np.ndarray, out: np.ndarray, table: np.ndarray) -> None:
    """BGR uint8 -> RGB planes of ``out`` (views of shape H x W), through the /255 table.

    ``cv2.split`` gives contiguous planes and ``cv2.LUT`` writes each one straight into its slot of
    the tensor (a strided view is fine), so the channel swap, the scaling, the dtype conversion and
    the HWC -> CHW transpose cost no extra copies: about 3x faster than NumPy's
    transpose-astype-divide chain, and 4x for float16, which NumPy converts slowly.
    """
    b, g, r = cv2.split(bgr)
    for plane, dst in zip((r, g, b), out, strict=True):
        written = cv2.LUT(plane, table, dst=dst)
        if written is not dst:  # OpenCV allocated instead of writing in place: never seen, but be exact
            dst[...] = written


def to_tensor(padded_bgr: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """BGR uint8 H x W x 3 -> contiguous RGB [1, 3, H, W] in ``dtype`` (float32 or float16), 0..1."""
    table = _unit_table(_check_dtype(dtype))
    h, w = padded_bgr.shape[:2]
    out = np.empty((1, 3, h, w), dtype=table.dtype)
    _write_planes(np.ascontiguousarray(padded_bgr), out[0], table)
    return out


def preprocess(
    image_bgr: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    dtype: np.dtype | type = np.float32,
    *,
    stride: int | None = None,
) -> tuple[np.ndarray, Letterbox]:
    """The model input for one frame, and how to map boxes back.

    Equal to ``to_tensor(letterbox(image)[0])`` value for value, but the resized pixels go straight
    into the tensor and only the border is filled with 114/255: no padded uint8 image is built, and
    the channel split and lookup touch only real pixels (45% fewer for a 16:9 frame).
    """
    table = _unit_table(_check_dtype(dtype))
    resized, fit, lb = _resized(image_bgr, new_shape, stride)
    new_h, new_w = lb.new_shape
    (w, h), top, left = fit.size, fit.top, fit.left
    out = np.empty((1, 3, new_h, new_w), dtype=table.dtype)
    grey = table[PAD_VALUE]
    planes = out[0]
    planes[:, :top] = grey
    planes[:, top + h :] = grey
    planes[:, top : top + h, :left] = grey
    planes[:, top : top + h, left + w :] = grey
    _write_planes(resized, planes[:, top : top + h, left : left + w], table)
    return out, lb
