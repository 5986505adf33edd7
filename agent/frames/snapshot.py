"""The latest frame with its detections drawn, as JPEG: what the console's camera view shows.

Boxes and ``class 0.87`` labels in a per-class colour (fieldtui.protocol.palette, which the console's
per-class counts use too). The frame is scaled down first and the boxes with it, so lines and text
stay crisp at the size the console asked for instead of being blurred by a resize after drawing. cv2 is imported inside: the agent's other modules must not need it to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fieldtui.protocol.palette import class_rgb

JPEG_QUALITY = 80
# Below this frame width a label's text is a few unreadable pixels that would only hide the object (a
# terminal's camera view asks for about one pixel per column): the boxes stay, in their class colour,
# and the console's per-class counts use the same colours as a legend.
LABEL_MIN_WIDTH = 320


def class_color_bgr(class_id: int) -> tuple[int, int, int]:
    r, g, b = class_rgb(class_id)
    return b, g, r


def _text_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def scaled(image: np.ndarray, width: int | None) -> tuple[np.ndarray, float]:
    """``image`` resized to ``width`` pixels wide (never enlarged) and the scale factor used."""
    import cv2

    h, w = image.shape[:2]
    if not width or width >= w:
        return image.copy(), 1.0
    scale = width / w
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    names: Mapping[int, str],
) -> np.ndarray:
    """Draw boxes and labels onto ``image`` (in place) and return it. Boxes are x1y1x2y2 in its pixels.

    A label goes outside its box (above it, else below it) so it never covers the object; only a box
    spanning the whole frame height gets it inside. Frames under ``LABEL_MIN_WIDTH`` get boxes only.
    """
    import cv2

    h, w = image.shape[:2]
    thickness = max(1, round(min(h, w) / 240))
    font_scale = max(0.3, min(h, w) / 900)
    for box, score, cid in zip(boxes, scores, class_ids, strict=True):
        color = class_color_bgr(int(cid))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        if w < LABEL_MIN_WIDTH:
            continue
        label = f"{names.get(int(cid), f'class_{int(cid)}')} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        band = th + base + 2
        if y1 - band >= 0:
            top = y1 - band  # above the box
        elif y2 + band < h:
            top = y2 + 1  # below it: the box touches the top of the frame
        else:
            top = y1  # a box as tall as the frame: inside, the only place left
        cv2.rectangle(image, (x1, top), (min(w - 1, x1 + tw + 4), top + th + base + 2), color, cv2.FILLED)
        cv2.putText(
            image,
            label,
            (x1 + 2, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            _text_color(color),
            1,
            cv2.LINE_AA,
        )
    return image


def render_snapshot(
    image: np.ndarray,
    detections: Any,
    names: Mapping[int, str],
    *,
    width: int | None = None,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """JPEG of ``image`` (BGR, untouched) scaled to ``width`` with ``detections`` drawn on the copy."""
    import cv2

    canvas, scale = scaled(image, width)
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    if len(detections):
        draw_detections(
            canvas,
            np.asarray(detections.boxes, dtype=np.float32) * scale,
            np.asarray(detections.scores),
            np.asarray(detections.class_ids),
            names,
        )
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):  # OpenCV >= 4.5.5: full-resolution colour keeps
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]  # thin boxes vivid
    ok, buf = cv2.imencode(".jpg", canvas, params)
    if not ok:  # only a broken OpenCV build gets here
        raise RuntimeError("cv2.imencode could not encode the snapshot as JPEG")
    return buf.tobytes()
