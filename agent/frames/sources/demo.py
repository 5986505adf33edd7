"""``demo:`` — a synthetic camera: moving shapes of four classes over slowly changing backgrounds.

The scene is a pure function of (seed, t), so tests, the demo model's training script and a live agent
all see the same thing for the same inputs, with exact ground-truth boxes. Faults are injected by time
(``demo:?faults=blur@20,dark@40,freeze@60,cover@80``) so the demo can show a camera going bad: a dirty
or out-of-focus lens (blur), a light failing (dark), a stuck capture (freeze) and a covered lens (cover).

Rendering a 640x480 frame takes a few milliseconds: the smooth background is computed at quarter
resolution and scaled up, fine texture and sensor noise come from a per-scene tile read at a moving
offset, and the shapes are anti-aliased ``cv2.fillPoly`` polygons.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qsl

import cv2
import numpy as np

from agent.core.errors import SourceError
from agent.frames.sources.base import Frame, Source

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
FAULT_KINDS: tuple[str, ...] = ("blur", "dark", "freeze", "cover")
LAST_FAULT_SECONDS = 15.0  # how long the last fault of a spec lasts when it has no explicit end
MIN_VISIBLE = 0.5  # a shape is ground truth when at least this fraction of it is in view and unoccluded

Box = tuple[int, float, float, float, float]  # class_id, x1, y1, x2, y2 in pixels

_FAULT_FORM = "expected kind@start or kind@start-end in seconds, kinds: " + ", ".join(FAULT_KINDS)
_URI_FORM = "demo:?faults=blur@20,dark@40&fps=30&seed=0&size=640x480"


# --- faults ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # one of FAULT_KINDS
    start: float  # seconds since the source opened
    end: float  # exclusive

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


def parse_faults(spec: str) -> list[Fault]:
    """Parse ``"blur@20,dark@40-50,freeze@60"`` into faults sorted by start.

    A fault without an explicit end lasts until the next fault starts; the last one lasts
    ``LAST_FAULT_SECONDS``.
    """
    parsed: list[tuple[str, float, float | None]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        kind, at, when = item.partition("@")
        kind = kind.strip().lower()
        if kind not in FAULT_KINDS or not at:
            raise SourceError(f"bad demo fault {item!r}: {_FAULT_FORM}")
        start_s, dash, end_s = when.partition("-")
        try:
            start = float(start_s)
            end = float(end_s) if dash else None
        except ValueError:
            raise SourceError(f"bad demo fault {item!r}: {_FAULT_FORM}") from None
        if (
            not np.isfinite(start)
            or start < 0
            or (end is not None and not (np.isfinite(end) and end > start))
        ):
            raise SourceError(f"bad demo fault {item!r}: times must be >= 0 and end after start")
        parsed.append((kind, start, end))
    parsed.sort(key=lambda f: f[1])
    faults = []
    for i, (kind, start, end) in enumerate(parsed):
        if end is None:
            end = parsed[i + 1][1] if i + 1 < len(parsed) else start + LAST_FAULT_SECONDS
            end = max(end, start + 1e-3)  # two faults at the same second: the first one still exists
        faults.append(Fault(kind, start, end))
    return faults


def fault_at(faults: list[Fault], t: float) -> Fault | None:
    """The fault in effect at ``t``: of those active, the one that started last."""
    active = [f for f in faults if f.active(t)]
    return max(active, key=lambda f: f.start) if active else None


# --- the scene ---------------------------------------------------------------------------------------


def _unit_shapes() -> tuple[np.ndarray, ...]:
    """Polygons of each class, centred on the origin, fitting a unit square before rotation."""
    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    circle = np.stack([np.cos(a), np.sin(a)], 1) * 0.5
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    h = np.sqrt(3) / 2
    triangle = np.array([[0.0, -2 * h / 3], [0.5, h / 3], [-0.5, h / 3]])
    w = 1 / 6  # half the arm thickness: arms a third of the size wide
    cross = np.array(
        [[-w, -0.5], [w, -0.5], [w, -w], [0.5, -w], [0.5, w], [w, w],
         [w, 0.5], [-w, 0.5], [-w, w], [-0.5, w], [-0.5, -w], [-w, -w]]
    )  # fmt: skip
    return circle, square, triangle, cross


_SHAPES = _unit_shapes()
# Saturated and neutral colours (BGR) a camera would see on toys, signs and stickers.
_PALETTE = np.array(
    [[40, 40, 220], [40, 180, 40], [220, 90, 30], [30, 210, 230], [235, 235, 235], [25, 25, 25],
     [30, 130, 245], [170, 50, 160], [210, 200, 40], [120, 120, 120], [60, 90, 140], [150, 230, 150]],
    dtype=np.float32,
)  # fmt: skip


def _bounce(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Position of a point moving along x that bounces between lo and hi (a triangle wave)."""
    span = hi - lo
    m = np.mod(x - lo, 2 * span)
    return lo + np.where(m < span, m, 2 * span - m)


def _visible_box(
    box: tuple[float, float, float, float], mask: np.ndarray
) -> tuple[float, float, float, float]:
    """The shape's box shrunk to what another shape leaves of it (``mask``: its half-size pixels).

    A box is what a person would draw around what they see. The mask's box, grown by two half-size
    pixels (a thin corner may fill no pixel of its own), contains the exact polygon box of an unhidden
    shape, so only hidden sides move.
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return box
    x1, y1, x2, y2 = box
    vx1, vx2 = 2.0 * (cols[0] - 2), 2.0 * (cols[-1] + 3)
    vy1, vy2 = 2.0 * (rows[0] - 2), 2.0 * (rows[-1] + 3)
    return max(x1, vx1), max(y1, vy1), min(x2, vx2), min(y2, vy2)


@dataclass(frozen=True, slots=True)
class Annotation:
    class_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 of what is in view and not hidden
    visible: float  # fraction of the shape in view and not hidden by another shape, 0..1


class DemoScene:
    """A deterministic synthetic scene: ``render(t)`` gives the same frame and boxes for the same seed and t."""

    def __init__(
        self, width: int = 640, height: int = 480, seed: int = 0, *, shapes: tuple[int, int] = (3, 7)
    ) -> None:
        """``shapes``: the fewest and most shape slots (each shows most of the time); training asks for more."""
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise SourceError(f"demo frame size {width}x{height} is out of range: use 16..4096 per side")
        self.width, self.height, self.seed = width, height, seed
        rng = np.random.default_rng(seed)
        unit = min(width, height)
        self._bw, self._bh = max(4, width // 4), max(4, height // 4)  # background computed at 1/4 size

        # Background: a two-colour gradient that turns, stripes that drift, blobs that cross-fade, a tint.
        self._bg_colors = rng.uniform(20, 235, (2, 3)).astype(np.float32)
        self._grad_angle, self._grad_speed = rng.uniform(0, 2 * np.pi), rng.uniform(-0.05, 0.05)
        self._stripe_amp = rng.choice([0.0, rng.uniform(8, 45)])
        # Stripes 5-25 % of the frame apart; k is in radians per unit of the normalised coordinates.
        self._stripe_k = 2 * np.pi * self._bw / (rng.uniform(0.05, 0.25) * unit / 4)
        self._stripe_angle, self._stripe_speed = rng.uniform(0, np.pi), rng.uniform(-4, 4)
        self._stripe_cross = rng.random() < 0.3  # stripes in both directions: a checker-like texture
        self._blob_amp, self._blob_period = rng.uniform(0, 60), rng.uniform(6, 20)
        self._tint = rng.uniform(-25, 25, 3).astype(np.float32)
        self._tint_freq = rng.uniform(0.01, 0.05, 3)
        self._gain_amp, self._gain_freq = rng.uniform(0, 0.15), rng.uniform(0.01, 0.06)
        yy, xx = np.mgrid[0 : self._bh, 0 : self._bw].astype(np.float32)
        self._xx, self._yy = (xx - self._bw / 2) / self._bw, (yy - self._bh / 2) / self._bh

        # Fine texture plus sensor noise: a 256 px tile per scene, repeated over the frame (cheap to set up;
        # a repeat that far apart in noise this faint is invisible) and read at a different offset every
        # frame. Stored offset by 128 so one saturating cv2.addWeighted applies it.
        self._margin = 16
        grain = cv2.GaussianBlur(
            rng.standard_normal((256, 256, 3), np.float32), (0, 0), rng.uniform(0.6, 2.0)
        )
        grain *= rng.uniform(2, 12) / max(float(grain.std()), 1e-6)
        grain += rng.standard_normal((256, 256, 3), np.float32) * rng.uniform(1.0, 5.0)
        reps = (-(-(height + 2 * self._margin) // 256), -(-(width + 2 * self._margin) // 256), 1)
        self._grain = np.tile(np.clip(grain + 128, 0, 255).astype(np.uint8), reps)

        # Shapes: each slot has a class, colour, size, a bouncing path, a spin and an on/off cycle.
        n = int(rng.integers(shapes[0], shapes[1] + 1))
        self._cls = rng.integers(0, len(CLASSES), n)
        self._color = np.clip(_PALETTE[rng.integers(0, len(_PALETTE), n)] + rng.normal(0, 18, (n, 3)), 0, 255)
        self._size = rng.uniform(0.08, 0.28, n) * unit
        self._size_amp, self._size_freq = rng.uniform(0, 0.2, n), rng.uniform(0.02, 0.1, n)
        speed = rng.uniform(0.03, 0.25, n) * unit  # pixels per second
        heading = rng.uniform(0, 2 * np.pi, n)
        self._vel = np.stack([np.cos(heading), np.sin(heading)], 1) * speed[:, None]
        self._pos0 = rng.uniform(0, 1, (n, 2)) * (width, height)
        # Shapes sway about upright rather than spin: a square stays a square, not a diamond, and a
        # cross a plus, not an x, as a person would name them (and the demo model learns them faster).
        self._angle0, self._sway = rng.uniform(-20, 20, n), rng.uniform(0, 15, n)
        self._sway_freq, self._sway_phase = rng.uniform(0.05, 0.3, n), rng.uniform(0, 2 * np.pi, n)
        self._on_freq, self._on_phase = rng.uniform(0.02, 0.08, n), rng.uniform(0, 2 * np.pi, n)
        self._on_level = np.where(rng.random(n) < 0.4, -2.0, rng.uniform(-0.8, 0.2, n))  # -2: always on

    # -- drawing --

    def _background(self, t: float) -> np.ndarray:
        # Python floats keep the arithmetic in float32 (NumPy scalars would promote it to float64).
        a = float(self._grad_angle + self._grad_speed * t)
        g = np.clip(0.5 + self._xx * math.cos(a) + self._yy * math.sin(a), 0, 1)[..., None]
        bg = self._bg_colors[0] * (1 - g) + self._bg_colors[1] * g
        tint = self._tint * np.sin(2 * np.pi * self._tint_freq * t).astype(np.float32)
        bg += tint
        if self._stripe_amp:
            c, s, k = math.cos(self._stripe_angle), math.sin(self._stripe_angle), float(self._stripe_k)
            wave = np.sin((self._xx * c + self._yy * s) * k + float(self._stripe_speed * t))
            if self._stripe_cross:
                wave *= np.sin((self._yy * c - self._xx * s) * k)
            bg += (float(self._stripe_amp) * wave)[..., None]
        if self._blob_amp:
            # Smooth blobs from two coarse random fields, cross-fading from one period to the next.
            k, frac = divmod(t / self._blob_period, 1.0)
            fields = [
                np.random.default_rng([self.seed, int(k) + i, 7]).normal(0, 1, (4, 5, 3)).astype(np.float32)
                for i in (0, 1)
            ]
            coarse = fields[0] * (1 - frac) + fields[1] * frac
            bg += float(self._blob_amp) * cv2.resize(
                coarse, (self._bw, self._bh), interpolation=cv2.INTER_CUBIC
            )
        gain = float(1.0 + self._gain_amp * np.sin(2 * np.pi * self._gain_freq * t))
        bg = np.clip(bg * gain, 0, 255).astype(np.uint8)
        return cv2.resize(bg, (self.width, self.height), interpolation=cv2.INTER_LINEAR)

    def _polygons(self, t: float) -> list[tuple[int, np.ndarray, int]]:
        """(class_id, polygon points in pixels, slot index) of the shapes present at t, back to front."""
        on = np.sin(2 * np.pi * self._on_freq * t + self._on_phase) > self._on_level
        size = self._size * (1 + self._size_amp * np.sin(2 * np.pi * self._size_freq * t))
        # Shapes reach over the frame's edges, but never by more than 40 % of their size: a cut shape
        # is still clearly itself (and ground truth), not a sliver nobody could name.
        lo = 0.1 * size[:, None] * np.ones((1, 2))
        hi = np.array([[self.width, self.height]]) - lo
        centre = _bounce(self._pos0 + self._vel * t, lo, hi)
        sway = self._sway * np.sin(2 * np.pi * self._sway_freq * t + self._sway_phase)
        angle = np.deg2rad(self._angle0 + sway)
        out = []
        for i in np.flatnonzero(on):
            c, s = np.cos(angle[i]), np.sin(angle[i])
            rot = np.array([[c, s], [-s, c]])
            out.append((int(self._cls[i]), _SHAPES[self._cls[i]] @ rot * size[i] + centre[i], int(i)))
        return out

    def _contrasting(self, color: np.ndarray, bg: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The slot's colour, or a stand-in when it would vanish against the background under it."""
        x1, y1, x2, y2 = box
        patch = bg[y1:y2:4, x1:x2:4]
        if patch.size == 0:
            return color
        mean = patch.reshape(-1, 3).mean(0)
        candidates = (color, 255 - color, np.full(3, 20.0), np.full(3, 235.0))
        for cand in candidates:
            if np.abs(cand - mean).sum() >= 150:
                return cand
        return max(candidates, key=lambda cand: float(np.abs(cand - mean).sum()))

    def render_annotated(self, t: float) -> tuple[np.ndarray, list[Annotation]]:
        """The frame at ``t`` and every shape drawn, with how much of it is visible."""
        frame = self._background(t)
        polys = self._polygons(t)
        w, h = self.width, self.height
        # Half-resolution label map: which shape owns each pixel after occlusion, for visibility.
        labels = np.zeros(((h + 1) // 2, (w + 1) // 2), np.uint8)
        boxes = []
        for k, (_, pts, slot) in enumerate(polys):
            fixed = np.round(pts * 16).astype(np.int32)  # 4 fractional bits: sub-pixel motion
            x1, y1 = np.clip(pts.min(0), 0, (w, h))
            x2, y2 = np.clip(pts.max(0), 0, (w, h))
            boxes.append((float(x1), float(y1), float(x2), float(y2)))
            color = self._contrasting(self._color[slot], frame, (int(x1), int(y1), int(x2) + 1, int(y2) + 1))
            cv2.fillPoly(frame, [fixed], color.tolist(), lineType=cv2.LINE_AA, shift=4)
            cv2.fillPoly(labels, [np.round(pts * 8).astype(np.int32)], k + 1, shift=4)
        counts = np.bincount(labels.ravel(), minlength=len(polys) + 1)
        annotations = []
        for k, (cls, pts, _) in enumerate(polys):
            area = 0.25 * abs(float(cv2.contourArea(pts.astype(np.float32))))
            visible = min(1.0, counts[k + 1] / area) if area > 0 else 0.0
            annotations.append(Annotation(cls, _visible_box(boxes[k], labels == k + 1), visible))
        # Texture and sensor noise over everything, at an offset that changes every frame.
        m = self._margin
        ox, oy = (zlib.crc32(f"{self.seed}:{t:.4f}".encode()) >> n & (2 * m - 1) for n in (0, 8))
        grain = self._grain[oy : oy + h, ox : ox + w]
        frame = cv2.addWeighted(frame, 1.0, grain, 1.0, -128.0)
        return frame, annotations

    def render(self, t: float) -> tuple[np.ndarray, list[Box]]:
        """BGR uint8 frame at ``t`` seconds and its ground truth ``(class_id, x1, y1, x2, y2)``.

        Ground truth is every shape at least ``MIN_VISIBLE`` in view and not hidden by another; its box
        is that of what shows: clipped to the frame, and shrunk where another shape covers a side.
        """
        frame, annotations = self.render_annotated(t)
        return frame, [(a.class_id, *a.box) for a in annotations if a.visible >= MIN_VISIBLE]

    def apply_fault(self, frame: np.ndarray, kind: str, strength: float = 1.0) -> np.ndarray:
        """The frame as a camera with this fault would deliver it; ``strength`` 0 = clean, 1 = full."""
        s = float(np.clip(strength, 0.0, 1.0))
        if kind == "blur":  # out of focus or a smeared lens: edges gone, shapes become soft blobs
            h, w = frame.shape[:2]
            sigma = 0.035 * min(h, w) * s
            if sigma < 2:
                return cv2.GaussianBlur(frame, (0, 0), sigma) if sigma > 0.1 else frame.copy()
            # A wide Gaussian at full size costs tens of ms; at quarter size and scaled back it looks the
            # same (nothing sharp is left to lose) and costs about one.
            small = cv2.resize(frame, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), sigma / 4)
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if kind == "dark":  # the light failed: a few percent of the brightness, shapes barely there
            return cv2.convertScaleAbs(frame, alpha=1.0 - 0.9 * s)
        if kind == "cover":  # something over the lens: a dark, nearly uniform frame
            h, w = frame.shape[:2]
            small = cv2.resize(frame, (max(1, w // 32), max(1, h // 32)), interpolation=cv2.INTER_AREA)
            leak = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)  # light leaking round the edge
            covered = cv2.addWeighted(leak, 0.06, np.full_like(frame, 14), 1.0, 0.0)
            return cv2.addWeighted(frame, 1.0 - s, covered, s, 0.0)
        if kind == "freeze":
            raise SourceError("freeze repeats the previous frame: the source applies it, not apply_fault")
        raise SourceError(f"unknown demo fault {kind!r}: use one of " + ", ".join(FAULT_KINDS))


# --- the source --------------------------------------------------------------------------------------


class DemoSource(Source):
    """The synthetic scene as a live camera: paced at ``fps``, t = seconds since ``open()``, faults by time."""

    kind = "demo"
    live = True

    def __init__(
        self,
        uri: str = "demo:",
        *,
        faults: list[Fault] | None = None,
        fps: float = 30.0,
        seed: int = 0,
        size: tuple[int, int] = (640, 480),
    ) -> None:
        super().__init__(uri)
        if not (0 < fps <= 240):
            raise SourceError(f"demo fps {fps:g} is out of range: use 0 < fps <= 240, e.g. {_URI_FORM}")
        self.faults = list(faults or [])
        self.fps = float(fps)
        self.scene = DemoScene(size[0], size[1], seed)
        self.last_truth: list[Box] = []  # ground truth of the last frame read (what a test can score)
        self.last_fault: str | None = None  # the fault applied to the last frame read
        self._t0: float | None = None
        self._next = 0.0
        self._index = 0
        self._last: tuple[np.ndarray, list[Box]] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.scene.width, self.scene.height

    def open(self) -> None:
        self._t0 = self._next = time.monotonic()
        self._index = 0
        self._last = None

    def read(self) -> Frame:
        if self._t0 is None:
            raise SourceError("the demo source is not open: call open() first")
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            now = time.monotonic()
        # A late reader gets the current scene, not a burst of catch-up frames.
        self._next = max(self._next + 1.0 / self.fps, now)
        t = now - self._t0
        fault = fault_at(self.faults, t)
        kind = fault.kind if fault else None
        if kind == "freeze" and self._last is not None:
            image, truth = self._last[0].copy(), self._last[1]  # the capture is stuck on the last frame
        else:
            image, truth = self.scene.render(t)
            if kind in ("blur", "dark", "cover"):
                image = self.scene.apply_fault(image, kind)
            self._last = (image.copy(), truth)  # a copy: the reader may draw on the frame it gets
        self.last_truth, self.last_fault = truth, kind
        frame = Frame(image=image, ts=now, index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._t0 = None
        self._last = None


def open_demo(uri: str) -> DemoSource:
    """Build a DemoSource from ``demo:`` or ``demo:?faults=...&fps=30&seed=0&size=640x480``."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() != "demo":
        raise SourceError(f"not a demo source: {uri!r}; use {_URI_FORM}")
    rest = rest.lstrip("/")
    if rest and not rest.startswith("?"):
        raise SourceError(f"bad demo source {uri!r}: options go after '?', e.g. {_URI_FORM}")
    options = dict(parse_qsl(rest[1:], keep_blank_values=True))
    unknown = sorted(set(options) - {"faults", "fps", "seed", "size"})
    if unknown:
        raise SourceError(
            f"unknown demo option {unknown[0]!r}: accepted are faults, fps, seed, size ({_URI_FORM})"
        )
    try:
        fps = float(options.get("fps", "30"))
        seed = int(options.get("seed", "0"))
        w, _, h = options.get("size", "640x480").lower().partition("x")
        size = (int(w), int(h))
    except ValueError:
        raise SourceError(
            f"bad demo source {uri!r}: fps is a number, seed an integer, size WxH ({_URI_FORM})"
        ) from None
    if not np.isfinite(fps):
        raise SourceError(f"bad demo fps in {uri!r}: use 0 < fps <= 240")
    return DemoSource(uri, faults=parse_faults(options.get("faults", "")), fps=fps, seed=seed, size=size)
