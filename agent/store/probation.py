"""The checks an activation stands on: the health check before the swap, the probation after it.

*Health check* (before anything changes): the new model runs on recent live frames beside last good
(the newest version that passed probation, or the configured model - never one still on probation);
every output must be finite, postprocessing must work, and its median inference time must stay within
``latency_factor`` x last good's (+ ``latency_slack_ms``, so the timer noise of tiny models is not a
verdict). Both models run on the same frames in the same thread, interleaved, so a busy CPU slows both
alike.

*Probation* (after the swap): :class:`FrameWatch`, a pipeline listener, keeps each frame's confidence
(the mean score of its detections, 0 for a frame without any); at the end of the window the new model's
mean is compared with last good's figures (measured live before the swap when last good was serving,
else those recorded with its history entry), and so is its live inference time. A collapse of either is
a failed probation.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.core.errors import ModelError
from agent.store.settings import ModelSettings

SETTLE_S = 0.2  # frames this soon after the swap are not judged (caches, first-run allocations)


@dataclass(frozen=True)
class Figures:
    frames: int
    confidence: float | None  # mean per-frame confidence; None without frames
    infer_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        conf = None if self.confidence is None else round(self.confidence, 4)
        infer = None if self.infer_ms is None else round(self.infer_ms, 3)
        return {"frames": self.frames, "confidence": conf, "infer_ms": infer}


class FrameWatch:
    """A cheap pipeline listener: per frame, a timestamp and a confidence; the last few images."""

    def __init__(self, keep_s: float = 600.0, images: int = 8) -> None:
        self._lock = threading.Lock()
        self._frames: deque[tuple[float, float]] = deque(maxlen=20_000)
        self._images: deque[tuple[float, np.ndarray]] = deque(maxlen=images)
        self.keep_s = keep_s

    def on_frame(self, image: np.ndarray, detections: Any, names: dict) -> None:
        scores = detections.scores
        conf = float(scores.mean()) if len(scores) else 0.0
        now = time.monotonic()
        with self._lock:
            self._frames.append((now, conf))
            self._images.append((now, image))  # a reference: the pipeline makes a new array per frame

    def images(self, max_age_s: float = 5.0) -> list[np.ndarray]:
        """Recent live frames (newest last); empty when the pipeline has shown none lately."""
        cutoff = time.monotonic() - max_age_s
        with self._lock:
            return [img for ts, img in self._images if ts >= cutoff]

    def figures(self, since: float, until: float | None = None) -> Figures:
        """Frames and mean confidence between two monotonic times."""
        until = time.monotonic() if until is None else until
        with self._lock:
            confs = [c for ts, c in self._frames if since <= ts < until]
        return Figures(len(confs), statistics.fmean(confs) if confs else None)


def blank_frame(shape: tuple[int, int, int, int]) -> np.ndarray:
    """A mid-grey BGR image the size of the model's input, when no live frame is at hand."""
    return np.full((shape[2], shape[3], 3), 114, dtype=np.uint8)


def _timed_infer(detector: Any, image: np.ndarray) -> tuple[list[np.ndarray], Any, float]:
    tensor, lb = detector.preprocess(image)
    t0 = time.perf_counter()
    outputs = detector.infer(tensor)
    return outputs, lb, (time.perf_counter() - t0) * 1000.0


def health_check(
    new: Any,
    current: Any,
    frames: list[np.ndarray],
    settings: ModelSettings,
    *,
    label: str,
    current_label: str,
    serving_label: str | None = None,
) -> dict[str, Any]:
    """Run ``new`` (and ``current`` - last good - for the latency baseline) on ``frames``; the figures,
    or ModelError saying what failed. ``frames`` empty: one blank frame (said so in the figures).
    ``serving_label``: what keeps serving when ``new`` is refused (default: ``current_label``)."""
    serving_label = serving_label or current_label
    live = bool(frames)
    frames = frames or [blank_frame(new.input_shape)]
    rounds = max(settings.health_frames, 1)
    new_ms: list[float] = []
    cur_ms: list[float] = []
    _timed_infer(new, frames[-1])  # warm-up on a live frame, not timed
    for i in range(rounds):
        image = frames[-1 - (i % len(frames))]
        outputs, lb, ms = _timed_infer(new, image)
        for k, out in enumerate(outputs):
            arr = np.asarray(out)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = int(arr.size - np.isfinite(arr).sum())
                kind = "NaN" if np.isnan(arr).any() else "infinite"
                raise ModelError(
                    f"{label} gives {kind} values on {'live' if live else 'test'} frames ({bad} of "
                    f"{arr.size} in output {k}); not activated, {serving_label} keeps serving"
                )
        try:
            new.postprocess(outputs, lb)
        except Exception as err:  # noqa: BLE001 - any failure here is a verdict on the model
            raise ModelError(
                f"{label}'s outputs cannot be postprocessed ({type(err).__name__}: {err}); not activated, "
                f"{serving_label} keeps serving"
            ) from None
        new_ms.append(ms)
        if current is not None:
            cur_ms.append(_timed_infer(current, image)[2])
    new_med = statistics.median(new_ms)
    cur_med = statistics.median(cur_ms) if cur_ms else None
    figures = {
        "live_frames": live,
        "rounds": rounds,
        "new_infer_ms": round(new_med, 3),
        "new_infer_max_ms": round(max(new_ms), 3),
        "current_infer_ms": None if cur_med is None else round(cur_med, 3),
    }
    if cur_med is not None:
        limit = settings.latency_factor * cur_med + settings.latency_slack_ms
        if new_med > limit:
            raise ModelError(
                f"{label} is too slow: {new_med:.1f} ms per inference against {cur_med:.1f} ms for "
                f"{current_label} (limit {settings.latency_factor:g}x + {settings.latency_slack_ms:g} ms = "
                f"{limit:.1f} ms); not activated, {serving_label} keeps serving"
            )
    return figures


def judge(new: Figures, old: Figures, settings: ModelSettings, *, label: str, old_label: str) -> str | None:
    """Why the probation failed, or None when ``new`` holds up against ``old``."""
    if (
        old.frames >= settings.probation_min_frames
        and old.confidence is not None
        and old.confidence > 0.0
        and new.confidence is not None
    ):
        floor = settings.confidence_ratio * old.confidence
        if new.confidence < floor:
            return (
                f"confidence collapsed on live frames: {label} averages {new.confidence:.2f} over "
                f"{new.frames} frames against {old.confidence:.2f} for {old_label} "
                f"(limit {settings.confidence_ratio:.0%} of it)"
            )
    if new.infer_ms is not None and old.infer_ms is not None and old.infer_ms > 0:
        limit = settings.latency_factor * old.infer_ms + settings.latency_slack_ms
        if new.infer_ms > limit:
            return (
                f"{label} infers in {new.infer_ms:.1f} ms on live frames against {old.infer_ms:.1f} ms "
                f"for {old_label} (limit {limit:.1f} ms)"
            )
    return None


def compare(new: Figures, old: Figures, old_label: str, seconds: float) -> str:
    """The one-line comparison a technician reads in a toast: "confidence 0.42 vs 0.98 for v2 over 60 s"
    (and the inference times when the confidence held up)."""
    if new.confidence is not None and old.confidence is not None:
        text = f"confidence {new.confidence:.2f} vs {old.confidence:.2f} for {old_label} over {seconds:.0f} s"
        if new.infer_ms is not None and old.infer_ms is not None and new.confidence >= old.confidence / 2:
            text += f", {new.infer_ms:.1f} ms per inference vs {old.infer_ms:.1f} ms"
        return text
    if new.infer_ms is not None and old.infer_ms is not None:
        return f"{new.infer_ms:.1f} ms per inference vs {old.infer_ms:.1f} ms for {old_label} over {seconds:.0f} s"
    return f"{new.frames} frames over {seconds:.0f} s, nothing recorded for {old_label} to compare with"
