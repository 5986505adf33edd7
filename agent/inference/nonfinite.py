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
    """True when no float output holds NaN or Inf. A sum per output (NaN and Inf survive a sum) instead
    of a boolean mask per frame; only a sum that is not finite (which huge finite values could also
    give, by overflow) is confirmed element by element."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is judged, not warned about
        for out in outputs:
            arr = np.asarray(out)
            if arr.dtype.kind == "f" and not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
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
