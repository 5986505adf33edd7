"""Inference-core speed: letterbox + tensor conversion, and postprocess, against the issue's targets.

    .venv/bin/python bench/inference.py [--repeat 300]

Prints medians (and p90) with the target beside each figure. The functions are importable, so
bench/pipeline.py can reuse the realistic output generator.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.inference.postprocess import OutputLayout, postprocess  # noqa: E402
from agent.inference.preprocess import letterbox, preprocess, to_tensor  # noqa: E402

LETTERBOX_TARGET_MS = 3.0
POSTPROCESS_TARGET_MS = 1.0


def realistic_frame(width: int = 1920, height: int = 1080, seed: int = 0) -> np.ndarray:
    """A camera-like BGR frame: smooth gradients, some texture (resize cost depends little on content)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], axis=-1)
    noise = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def realistic_yolov8_output(
    nc: int = 80,
    anchors: int = 8400,
    objects: int = 15,
    per_object: int = 30,
    jitter: float = 0.04,
    seed: int = 0,
) -> np.ndarray:
    """[1, 4+nc, anchors] like a trained YOLOv8 on a busy scene: almost every score is small
    (sigmoid of a negative logit), and around each object a cluster of anchors scores high with
    jittered boxes (centre sigma ``jitter`` x size, size +-2.5 ``jitter``), so a few hundred candidates
    pass conf 0.25 and NMS has real work to do."""
    rng = np.random.default_rng(seed)
    out = np.empty((4 + nc, anchors), dtype=np.float32)
    out[0:2] = rng.uniform(0, 640, (2, anchors))
    out[2:4] = rng.uniform(4, 120, (2, anchors))
    out[4:] = 1 / (1 + np.exp(-rng.normal(-6.0, 1.2, (nc, anchors))))  # mostly < 0.02
    slots = rng.choice(anchors, size=objects * per_object, replace=False).reshape(objects, per_object)
    for obj in range(objects):
        cx, cy = rng.uniform(60, 580, 2)
        w, h = rng.uniform(30, 200, 2)
        cls = rng.integers(0, nc)
        idx = slots[obj]
        out[0, idx] = cx + rng.normal(0, w * jitter, per_object)
        out[1, idx] = cy + rng.normal(0, h * jitter, per_object)
        out[2, idx] = w * rng.uniform(1 - 2.5 * jitter, 1 + 2.5 * jitter, per_object)
        out[3, idx] = h * rng.uniform(1 - 2.5 * jitter, 1 + 2.5 * jitter, per_object)
        out[4 + cls, idx] = rng.uniform(0.3, 0.92, per_object)
    return out[None]


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 10) -> tuple[float, float, float]:
    """(median wall ms, p90 wall ms, median CPU ms of the whole process). On a busy machine the wall
    figure includes waiting for the CPU; the CPU figure is the work itself (all OpenCV threads)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    wall.sort()
    return statistics.median(wall), wall[int(len(wall) * 0.9)], statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args(argv)

    frame = realistic_frame()
    padded, lb = letterbox(frame, 640)
    rows = [
        ("letterbox() 1920x1080 -> 640, the uint8 image", lambda: letterbox(frame, 640), None),
        ("to_tensor() of that image, float32", lambda: to_tensor(padded, np.float32), None),
        ("to_tensor() of that image, float16", lambda: to_tensor(padded, np.float16), None),
        (
            "preprocess() 1920x1080 -> 640 tensor, float32",
            lambda: preprocess(frame, 640, np.float32),
            LETTERBOX_TARGET_MS,
        ),
        (
            "preprocess() 1920x1080 -> 640 tensor, float16",
            lambda: preprocess(frame, 640, np.float16),
            LETTERBOX_TARGET_MS,
        ),
    ]
    layout = OutputLayout("yolov8", 80)
    for label, output in (
        ("", realistic_yolov8_output()),
        (", loose boxes", realistic_yolov8_output(objects=20, per_object=25, jitter=0.08)),
    ):
        candidates = int((output[0, 4:].max(axis=0) > 0.25).sum())
        kept = len(postprocess([output], layout, lb))
        rows.append(
            (
                f"postprocess [1,84,8400] conf 0.25 ({candidates} cand, {kept} kept{label})",
                lambda output=output: postprocess([output], layout, lb, conf=0.25, iou=0.7, max_det=300),
                POSTPROCESS_TARGET_MS,
            )
        )

    print(f"{'stage':<66}{'median ms':>10}{'p90 ms':>9}{'cpu ms':>8}{'target':>9}{'ratio':>7}")
    for name, fn, target in rows:
        med, p90, cpu = median_ms(fn, args.repeat)
        tail = f"{'<= ' + format(target, '.1f'):>9}{med / target:>7.2f}" if target else ""
        print(f"{name:<66}{med:>10.3f}{p90:>9.3f}{cpu:>8.3f}{tail}")
    print(
        f"(median wall time; ratio = median / target; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
