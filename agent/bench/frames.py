"""Frames to benchmark on and to measure agreement with: from the live source, a folder, or the demo scene.

Held-out frames are real frames of the site where possible (the live source), because agreement on a
synthetic scene says little about a camera's own view; the demo scene is the fallback when there is no
live source (``fieldtui-agent bench`` on a device whose agent is stopped).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import ImageError
from agent.core.home import user_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def live_frames(pipeline: Any, n: int, timeout: float = 5.0) -> list[np.ndarray]:
    """Up to ``n`` distinct frames from ``pipeline.latest()``, without disturbing the pipeline."""
    frames: list[np.ndarray] = []
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        latest = pipeline.latest()
        if latest is not None and id(latest[0]) not in seen:
            seen.add(id(latest[0]))
            frames.append(latest[0].copy())  # the pipeline may reuse its buffer
        time.sleep(0.05)
    return frames


def folder_frames(folder: str | Path, n: int) -> list[np.ndarray]:
    """The first ``n`` images of ``folder`` (sorted by name); ImageError when it has none."""
    from agent.inference.detector import read_image

    root = user_path(folder, ImageError)
    if not root.is_dir():
        raise ImageError(f"frames folder not found: {root} (give a folder of JPEG or PNG images)")
    paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not paths:
        raise ImageError(f"no images in {root}: put JPEG or PNG frames from the camera there")
    return [read_image(p) for p in paths]


def scene_frames(n: int, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """``n`` frames of the demo scene, a second apart (deterministic)."""
    from agent.frames.sources.demo import DemoScene

    scene = DemoScene(width, height, seed=1)
    return [scene.render(float(i))[0] for i in range(n)]
