"""Camera health: cheap image statistics that tell a bad camera from a bad model.

When confidence falls, a technician needs to know whether to clean the lens or retrain the model.
Every few frames we look at a small grey copy of the frame (well under a millisecond) and measure:

- brightness: mean luma (0-255). Very dark means lights off or something over the lens.
- sharpness: variance of the Laplacian. A dirty or misted lens, or lost focus, makes it fall. It only
  means something against the same camera's usual value, so we keep a baseline: the median over the
  first healthy minute of the source, then a slow average of healthy values (day/night drift).
- frozen: the picture has not changed at all for 2 s on a live source (stuck encoder, hung camera).
- covered: dark and without texture (a cap, a hand, a bag over the camera), which tells it apart from a
  scene that is merely dark (lights off: "very dark").
"""

from __future__ import annotations

import statistics
from collections import deque

import numpy as np

from fieldtui.protocol import CameraHealth

DARK = 35.0  # mean luma below this: "very dark"
BRIGHT = 235.0  # above this: washed out
COVERED_LUMA = 60.0  # covered = darker than this, AND ...
COVERED_CONTRAST = 10.0  # ... little coarse structure (grey-level standard deviation), AND ...
# ... almost no fine detail for the light there is: sharpness / brightness^2, which dimming alone does
# not change (a dark scene keeps its edges, only fainter; a cap over the lens has none).
COVERED_DETAIL = 0.003
SHARPNESS_DROP = 0.5  # sharpness under half its baseline is worth a look
FROZEN_DIFF = 0.3  # mean absolute grey difference that counts as "no change"
FROZEN_AFTER_S = 2.0
MIN_BASELINE_SAMPLES = 5
WORK_WIDTH = 320  # frames are decimated to about this width before measuring


def _cv2():
    import cv2

    return cv2


def measure(image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(small grey image, brightness, sharpness, contrast) of a BGR frame.

    Decimation (nearest-neighbour resize) rather than area averaging: it is cheaper, and it keeps the
    fine detail whose loss we are trying to see.
    """
    cv2 = _cv2()
    h, w = image.shape[:2]
    step = max(1, round(w / WORK_WIDTH))
    small = cv2.resize(image, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_NEAREST)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    mean, std = cv2.meanStdDev(grey)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
    return grey, float(mean[0, 0]), float(lap_std[0, 0]) ** 2, float(std[0, 0])


class HealthMonitor:
    """Camera health of one source. Feed it every frame; it measures every ``every``-th one."""

    def __init__(self, *, live: bool = True, every: int = 5, baseline_s: float = 60.0) -> None:
        self.live = live
        self.every = max(1, every)
        self.baseline_s = baseline_s
        self.reset()

    def reset(self) -> None:
        """Forget everything: call when the source changes (new camera, new baseline)."""
        self._count = 0
        self._first_ts: float | None = None
        self._samples: deque[float] = deque(maxlen=1024)
        self._baseline: float | None = None
        self._baseline_fixed = False
        self._prev: np.ndarray | None = None
        self._prev_ts = 0.0
        self._still_since: float | None = None
        self.current: CameraHealth | None = None

    @property
    def baseline(self) -> float | None:
        return self._baseline

    def update(self, image: np.ndarray, ts: float) -> CameraHealth | None:
        """Count a frame; measure and return fresh health on every ``every``-th, else ``None``."""
        self._count += 1
        if (self._count - 1) % self.every:
            return None
        self.current = self.assess(image, ts)
        return self.current

    def assess(self, image: np.ndarray, ts: float) -> CameraHealth:
        """Measure ``image`` (captured at monotonic ``ts``) now, whatever the frame count."""
        grey, brightness, sharpness, contrast = measure(image)
        if self._first_ts is None:
            self._first_ts = ts

        frozen_s = self._frozen_for(grey, ts)
        frozen = self.live and frozen_s >= FROZEN_AFTER_S
        detail = sharpness / max(brightness, 1.0) ** 2
        covered = brightness < COVERED_LUMA and contrast < COVERED_CONTRAST and detail < COVERED_DETAIL
        dark = brightness < DARK

        ratio = sharpness / self._baseline if self._baseline else None
        if not (frozen or covered or dark):
            self._learn(sharpness, ratio, ts)
            ratio = sharpness / self._baseline if self._baseline else None

        reasons: list[str] = []
        if covered:
            reasons.append(
                f"image dark and featureless (brightness {brightness:.0f}, contrast {contrast:.0f}): "
                "lens covered?"
            )
        elif dark:
            reasons.append(f"image very dark (brightness {brightness:.0f}): lens covered or lights off?")
        elif brightness > BRIGHT:
            reasons.append(f"image washed out (brightness {brightness:.0f}): glare or exposure?")
        # Darkness alone lowers sharpness; only blame the lens when there is light to judge by.
        if ratio is not None and ratio < SHARPNESS_DROP and not (covered or dark):
            reasons.append(f"sharpness down {100 * (1 - ratio):.0f}%: lens dirty or out of focus?")
        if frozen:
            reasons.append(f"frame frozen for {frozen_s:.0f} s: camera stuck?")

        return CameraHealth(
            brightness=round(brightness, 1),
            sharpness=round(sharpness, 1),
            sharpness_ratio=None if ratio is None else round(ratio, 3),
            frozen=frozen,
            covered=covered,
            ok=not reasons,
            reasons=reasons,
        )

    def _frozen_for(self, grey: np.ndarray, ts: float) -> float:
        """For how long the picture has not changed (since the first frame showing it)."""
        prev, prev_ts = self._prev, self._prev_ts
        self._prev, self._prev_ts = grey, ts
        if prev is None or prev.shape != grey.shape:
            self._still_since = None
            return 0.0
        cv2 = _cv2()
        diff = cv2.norm(prev, grey, cv2.NORM_L1) / grey.size
        if diff > FROZEN_DIFF:
            self._still_since = None
            return 0.0
        if self._still_since is None:
            self._still_since = prev_ts
        return ts - self._still_since

    def _learn(self, sharpness: float, ratio: float | None, ts: float) -> None:
        if not self._baseline_fixed:
            # During the first minute: the median of healthy-looking values. A sudden drop (blur that
            # starts before the minute is up) is kept out so it cannot become "normal".
            if ratio is None or ratio >= SHARPNESS_DROP:
                self._samples.append(sharpness)
            if len(self._samples) >= MIN_BASELINE_SAMPLES:
                self._baseline = statistics.median(self._samples)
            if self._first_ts is not None and ts - self._first_ts >= self.baseline_s and self._baseline:
                self._baseline_fixed = True
        elif ratio is not None and 0.7 <= ratio <= 1.4:
            # Afterwards, follow slow drift (light through the day) but never a sudden change.
            self._baseline = 0.99 * self._baseline + 0.01 * sharpness
