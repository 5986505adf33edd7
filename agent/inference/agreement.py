"""Accuracy beside speed: how well a faster configuration agrees with the FP32 model.

Agreement is F1 at IoU 0.5, class-aware, with the FP32 model's detections as the reference, on held-out
frames (captured from the live source or read from a folder). It needs no labels, so a technician can
see on site that an INT8 engine "sees less" before activating it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

IOU_MATCH = 0.5


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n,4) and (m,4) x1y1x2y2 boxes -> (n,m)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_counts(reference: Any, candidate: Any, iou: float = IOU_MATCH) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of ``candidate`` against ``reference``
    (both :class:`~agent.inference.postprocess.Detections`), greedy by candidate score, one match per box."""
    ref_boxes, ref_cls = np.asarray(reference.boxes), np.asarray(reference.class_ids)
    cand_boxes, cand_cls = np.asarray(candidate.boxes), np.asarray(candidate.class_ids)
    n_ref, n_cand = len(ref_boxes), len(cand_boxes)
    if n_ref == 0 or n_cand == 0:
        return 0, n_cand, n_ref
    overlap = iou_matrix(cand_boxes, ref_boxes)
    overlap[cand_cls[:, None] != ref_cls[None, :]] = 0.0  # class-aware
    taken = np.zeros(n_ref, dtype=bool)
    tp = 0
    for i in np.argsort(-np.asarray(candidate.scores)):
        row = np.where(taken, -1.0, overlap[i])
        j = int(np.argmax(row))
        if row[j] >= iou:
            taken[j] = True
            tp += 1
    return tp, n_cand - tp, n_ref - tp


def f1_score(pairs: Iterable[tuple[Any, Any]], iou: float = IOU_MATCH) -> float:
    """F1 over all frames' (reference, candidate) detections; 1.0 when neither found anything."""
    tp = fp = fn = 0
    for ref, cand in pairs:
        a, b, c = match_counts(ref, cand, iou)
        tp, fp, fn = tp + a, fp + b, fn + c
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)


def agreement(reference: Any, candidate: Any, frames: Sequence[np.ndarray]) -> float:
    """F1 of ``candidate``'s detections against ``reference``'s (two loaded detectors) on ``frames``."""
    return f1_score((reference.detect(f), candidate.detect(f)) for f in frames)
