"""Redaction before a frame leaves the device: the boxes of chosen classes blurred beyond recognition.

Used by Trio forwarding (frame mode). The blur is a heavy box-filter pass on each region, strong
enough that a face or a plate inside cannot be read back, cheap enough for the forwarding worker.
cv2 is imported inside: importing this module needs no OpenCV.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np


def blur_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    class_ids: np.ndarray,
    names: Mapping[int, str],
    classes: Collection[str],
) -> int:
    """Blur, in place, every box of ``image`` whose class name is in ``classes``; returns how many."""
    if not classes or not len(boxes):
        return 0
    import cv2

    h, w = image.shape[:2]
    done = 0
    for box, cid in zip(np.asarray(boxes), np.asarray(class_ids), strict=True):
        if names.get(int(cid), f"class_{int(cid)}") not in classes:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        x1, y1 = max(0, min(x1, w)), max(0, min(y1, h))
        x2, y2 = max(0, min(x2, w)), max(0, min(y2, h))
        if x2 <= x1 or y2 <= y1:
            continue
        region = image[y1:y2, x1:x2]
        # Kernel about half the box: detail at any scale inside the box is gone, not just softened.
        k = max(3, (max(x2 - x1, y2 - y1) // 2) | 1)
        region[...] = cv2.blur(cv2.blur(region, (k, k)), (k, k))
        done += 1
    return done
