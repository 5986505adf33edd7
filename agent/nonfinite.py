"""Non-finite model outputs (NaN, Inf) while serving: a model fault the pre-swap health check can miss.

A model that gives NaN only on some inputs (dark frames, say) passes a health check on a handful of
frames, then silently detects nothing whenever those inputs come. The pipeline checks every frame's
outputs (:func:`outputs_finite`), counts the frames that fail (``fieldtui_agent_frames_nonfinite_total``,
alert ``FieldtuiModelNonFinite``), and probation fails a model that gave any (:func:`probation_reason`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def outputs_finite(outputs: Sequence[np.ndarray]) -> bool:
    """True when no float output holds NaN or Inf. One float64 sum per output (NaN and Inf survive a
    sum; float64 cannot overflow on a model's scores and coordinates), so no boolean mask per frame."""
    for out in outputs:
        arr = np.asarray(out)
        if arr.dtype.kind == "f" and not np.isfinite(np.add.reduce(arr, axis=None, dtype=np.float64)):
            return False
    return True


def probation_reason(bad: int, frames: int, label: str) -> str | None:
    """Why a probation fails on non-finite outputs: ``bad`` of the ``frames`` served since the swap."""
    if bad <= 0:
        return None
    return (
        f"{label} gave NaN or Inf outputs on {bad} of {frames} live frames (detections are lost on "
        "those frames: a model fault, e.g. an overflow on dark or unusual input)"
    )
