"""Model output -> detections: layout detection, decoding, class-aware NMS, boxes back to the image.

Three output layouts are understood, told apart from the output shape, the class count (from the
model's names) and Ultralytics' ``end2end`` metadata:

- ``yolov8``: YOLOv8 / YOLO11 raw ``[1, 4+nc, N]`` (cx, cy, w, h, then nc class scores); also the
  transposed ``[1, N, 4+nc]`` some exporters produce.
- ``end2end``: ``[1, K, 6]`` (x1, y1, x2, y2, score, class) from YOLOv10 / YOLO26: NMS is in the model.
- ``yolov5``: ``[1, N, 5+nc]`` (cx, cy, w, h, objectness, class scores); score = obj * cls.
- ``hailo_nms``: ``[1, K, 6]`` (y1, x1, y2, x2 normalised to the input, score, class) from a Hailo HEF's
  on-chip NMS, flattened by the Hailo backend; never guessed from a shape, the backend declares it.

Everything is NumPy vectorised (no Python loop over candidate boxes): candidates are filtered by confidence before anything else, so the work
after the first reduction scales with the few hundred candidates, not the 8400 anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.errors import ModelError
from agent.inference.preprocess import Letterbox
from fieldtui.protocol import Detection

LAYOUTS = ("yolov8", "end2end", "yolov5", "hailo_nms")
UNDERSTOOD = "YOLOv8/YOLO11 raw [1,4+nc,N], end-to-end [1,K,6] (x1,y1,x2,y2,score,class), YOLOv5 [1,N,5+nc]"
MAX_WH = 7680  # class offset for class-aware NMS (Ultralytics' value): larger than any box coordinate
MAX_NMS = 30000  # at most this many candidates, best first, enter NMS


@dataclass(frozen=True, slots=True)
class OutputLayout:
    """How to read output 0: ``kind`` is one of LAYOUTS; ``transposed`` means anchors are on axis 1;
    ``input_hw`` scales ``hailo_nms``'s normalised boxes to model-input pixels."""

    kind: str
    nc: int
    transposed: bool = False
    input_hw: tuple[int, int] | None = None


@dataclass(slots=True)
class Detections:
    """Detections in original image pixels: boxes (n, 4) x1y1x2y2 float32, scores (n,), class_ids (n,)."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_protocol(self, names: dict[int, str]) -> list[Detection]:
        return [
            Detection(
                class_id=int(c),
                class_name=names.get(int(c), f"class_{int(c)}"),
                confidence=round(float(s), 4),
                box=[round(float(v), 1) for v in box],
            )
            for box, s, c in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]


def anchor_count(input_hw: tuple[int, int], strides: Sequence[int] = (8, 16, 32)) -> int:
    """Grid cells over the usual three strides: 8400 at 640x640 (YOLOv5 has 3 anchors per cell)."""
    h, w = input_hw
    return sum((h // s) * (w // s) for s in strides)


def _shape_text(shapes: Sequence[Sequence[object]]) -> str:
    return ", ".join("[" + ",".join(str(d) for d in s) + "]" for s in shapes)


def detect_layout(
    output_shapes: Sequence[Sequence[int]],
    input_hw: tuple[int, int],
    nc: int | None = None,
    *,
    end2end: bool | None = None,
    nms: bool | None = None,
) -> OutputLayout:
    """Choose the layout of output 0 from its concrete shape (run the model once to get it).

    ``nc`` is the class count the model's names imply (None when it has none); ``end2end`` and ``nms``
    are Ultralytics' metadata (an end-to-end head, NMS baked in by ``nms=True``) when present: either
    means boxes after NMS, ``[1,K,6]``, whatever else the shape could be. When a shape fits two layouts
    (``[1,K,6]`` is end-to-end, YOLOv5 with one class, or transposed YOLOv8 with two), the anchor count
    for the input size decides. What is still ambiguous is refused, never guessed. Raises ModelError
    naming the shapes found, why, and the layouts understood.
    """
    shapes = [tuple(int(d) for d in s) for s in output_shapes]

    def fail(why: str) -> ModelError:
        return ModelError(
            f"not a detector this agent understands: output shapes {_shape_text(shapes)} ({why}); "
            f"understood layouts: {UNDERSTOOD}"
        )

    if not shapes:
        raise fail("no outputs")
    shape = shapes[0]
    if len(shape) != 3 or shape[0] != 1:
        raise fail("output 0 must be [1, a, b]")
    a, b = shape[1], shape[2]
    anchors = anchor_count(input_hw)

    if end2end or nms:
        said = "nms=True" if nms else "end2end=True"
        if b == 6:
            return OutputLayout("end2end", nc or 0)
        raise fail(f"the metadata says {said}, which gives boxes after NMS [1,K,6], but output 0 is not that")
    if nc is not None and nc > 0:
        layout = _layout_for_nc(a, b, nc, anchors, end2end)
        if layout is not None:
            return layout
        if b == 6 and a not in (anchors, 3 * anchors):
            # Boxes after NMS, or a raw 2-class head whose anchor count does not fit the input size?
            raise fail(
                f"{nc} class names but 6 values per row and {a} rows, not the {anchors} anchors of a raw "
                f"head at {input_hw[0]}x{input_hw[1]}: boxes after NMS would need metadata end2end=True "
                "or nms=True, which this model does not carry; re-export it with Ultralytics "
                "(nms=True or nms=False) so the metadata says which"
            )
    layout = _layout_from_shape(a, b, anchors, end2end)
    if layout is None:
        raise fail("no layout fits")
    return layout


def _layout_for_nc(a: int, b: int, nc: int, anchors: int, end2end: bool | None) -> OutputLayout | None:
    if b == 6 and end2end is not False and a not in (anchors, 3 * anchors):
        return OutputLayout("end2end", nc)
    if a == 4 + nc and b != 4 + nc:
        return OutputLayout("yolov8", nc)
    if b == 4 + nc and a != 4 + nc and not (b == 6 and a == 3 * anchors):
        return OutputLayout("yolov8", nc, transposed=True)
    if b == 5 + nc:
        return OutputLayout("yolov5", nc)
    return None


def _layout_from_shape(a: int, b: int, anchors: int, end2end: bool | None) -> OutputLayout | None:
    if b == 6 and end2end is not False and a not in (anchors, 3 * anchors):
        return OutputLayout("end2end", 0)
    if a == 3 * anchors and b > 5:
        return OutputLayout("yolov5", b - 5)
    channels, transposed = (a, False) if a <= b else (b, True)
    if channels > 4:
        return OutputLayout("yolov8", channels - 4, transposed)
    return None


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    xy, half = xywh[:, :2], xywh[:, 2:4] / 2
    return np.concatenate((xy - half, xy + half), axis=1)


def decode(output: np.ndarray, layout: OutputLayout, conf: float) -> tuple[np.ndarray, ...]:
    """Candidates above ``conf``: boxes x1y1x2y2 (model-input pixels), scores, class ids — before NMS."""
    pred = output[0]
    if layout.kind == "yolov8":
        # Work on [4+nc, N] rows: the max over classes reads contiguous rows, the fastest reduction.
        rows = pred.T if layout.transposed else pred
        if rows.dtype != np.float32:
            rows = rows.astype(np.float32)
        best = rows[4:].max(axis=0)
        idx = np.flatnonzero(best > conf)
        cand = rows[:, idx]
        class_ids = cand[4:].argmax(axis=0)
        xy, half = cand[:2], cand[2:4] * 0.5
        return np.concatenate((xy - half, xy + half)).T, best[idx], class_ids
    pred = pred.astype(np.float32, copy=False)
    if layout.kind == "hailo_nms":
        cand = pred[pred[:, 4] > conf]
        h, w = layout.input_hw or (1, 1)
        boxes = cand[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)  # y1x1y2x2 -> x1y1x2y2 pixels
        return boxes, cand[:, 4], cand[:, 5].astype(np.int64)
    if layout.kind == "yolov5":
        cand = pred[pred[:, 4] > conf]  # objectness first: the product can only be lower
        cls_scores = cand[:, 5:] * cand[:, 4:5]
        class_ids = cls_scores.argmax(axis=1)
        scores = cls_scores[np.arange(len(cand)), class_ids]
        keep = scores > conf
        return _xywh_to_xyxy(cand[keep, :4]), scores[keep], class_ids[keep]
    cand = pred[pred[:, 4] > conf]
    return cand[:, :4].copy(), cand[:, 4], cand[:, 5].astype(np.int64)


NMS_BLOCK = 64  # boxes settled per NMS round; 64 measured fastest for a few hundred candidates
_STRICTLY_ABOVE = np.triu(np.ones((NMS_BLOCK, NMS_BLOCK), dtype=bool), 1)


def _overlaps(a: np.ndarray, b: np.ndarray, iou: float) -> np.ndarray:
    """(p, q) bool, IoU > ``iou``, for columns of x1, y1, x2, y2, area: a (5, p), b (5, q).
    Compared as inter > iou * union so there is no division (and no 0/0)."""
    w = np.minimum.outer(a[2], b[2])
    w -= np.maximum.outer(a[0], b[0])
    h = np.minimum.outer(a[3], b[3])
    h -= np.maximum.outer(a[1], b[1])
    # Clipping w alone is enough: with w = 0 the intersection is 0, and with h < 0 it is negative;
    # either way it cannot exceed iou * union (which only grows when inter is negative).
    np.maximum(w, 0, out=w)
    w *= h  # intersection, or <= 0 when the boxes are apart
    union = np.add.outer(a[4], b[4])
    union -= w
    union *= iou
    return w > union


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Class-aware greedy NMS, exactly the classic result; returns kept indices, best score first.

    Boxes of different classes are shifted apart by ``class * MAX_WH`` so they never overlap. Instead
    of one Python step per kept box, each round settles the best ``NMS_BLOCK`` survivors at once:
    their small IoU matrix is resolved by fixed-point iteration (a box is kept iff no kept box
    above it overlaps it; each pass fixes at least one more position, usually 2-3 passes in all),
    then the kept ones suppress every remaining box in one vectorised step.
    """
    order = np.argsort(-scores, kind="stable")[:MAX_NMS]
    cols = np.empty((5, len(order)), dtype=np.float32)
    cols[:4] = boxes[order].T
    cols[:4] += class_ids[order] * np.float32(MAX_WH)
    cols[4] = (cols[2] - cols[0]).clip(0) * (cols[3] - cols[1]).clip(0)
    alive = np.arange(len(order))
    kept_chunks: list[np.ndarray] = []
    n_kept = 0
    while alive.size and n_kept < max_det:
        head, tail = alive[:NMS_BLOCK], alive[NMS_BLOCK:]
        head_cols = cols[:, head]
        n = len(head)
        above = _overlaps(head_cols, head_cols, iou) & _STRICTLY_ABOVE[:n, :n]  # [i, j]: i outranks j
        keep = np.ones(n, dtype=bool)
        while True:
            settled = ~above[keep].any(axis=0)
            if not (settled ^ keep).any():
                break
            keep = settled
        kept_chunks.append(head[keep])
        n_kept += int(keep.sum())
        if tail.size:
            tail = tail[~_overlaps(head_cols[:, keep], cols[:, tail], iou).any(axis=0)]
        alive = tail
    if not kept_chunks:
        return np.zeros(0, dtype=np.int64)
    return order[np.concatenate(kept_chunks)[:max_det]]


def postprocess(
    outputs: Sequence[np.ndarray],
    layout: OutputLayout,
    lb: Letterbox,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
) -> Detections:
    """Decode output 0, run NMS (not when the model or the accelerator did), keep ``max_det``, map boxes
    to the image."""
    boxes, scores, class_ids = decode(outputs[0], layout, conf)
    if scores.size == 0:
        return Detections.empty()
    if layout.kind in ("end2end", "hailo_nms"):
        keep = np.argsort(-scores, kind="stable")[:max_det]
    else:
        keep = nms(boxes, scores, class_ids, iou, max_det)
    return Detections(
        boxes=lb.unmap(boxes[keep]),
        scores=scores[keep].astype(np.float32, copy=False),
        class_ids=class_ids[keep].astype(np.int64, copy=False),
    )
