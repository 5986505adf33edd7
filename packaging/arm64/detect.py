"""The detection half of packaging/arm64/prove.sh, run inside the arm64 userland by the installed package.

    python detect.py --backend litert --model PATH [--runs N] [--frames DIR]

Loads PATH with the agent's Detector on BACKEND, detects on held-out demo scenes, prints what it found,
the F1 agreement with the demo ONNX model when ``--reference`` gives its detections, and a p50 of
``Detector.detect`` (preprocess, inference, postprocess). Under QEMU user emulation that figure is the
emulator's, not an Arm CPU's: it says only that the path runs, and roughly how LiteRT and ONNX Runtime
compare under the same emulator.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def scenes(count: int) -> list[np.ndarray]:
    from agent.frames.sources.demo import DemoScene

    return [
        DemoScene(640, 480, seed).render_annotated(float(np.random.default_rng(seed).uniform(0, 600)))[0]
        for seed in range(count)
    ]


def main() -> int:
    from agent.inference.agreement import f1_score
    from agent.inference.detector import Detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--frames", type=int, default=8, help="demo scenes to detect on")
    parser.add_argument("--save", type=Path, help="write the detections here (JSON), for --reference")
    parser.add_argument("--reference", type=Path, help="detections of the reference model (JSON)")
    parser.add_argument(
        "--jpeg", type=Path, help="also write the first scene here, for fieldtui-agent detect"
    )
    args = parser.parse_args()
    frames = scenes(args.frames)
    if args.jpeg:
        import cv2

        cv2.imwrite(str(args.jpeg), frames[0])
    with Detector.load(args.model, backend=args.backend, threads=1) as det:
        found = [det.detect(f) for f in frames]
        times = []
        for i in range(args.runs):
            t0 = time.perf_counter()
            det.detect(frames[i % len(frames)])
            times.append((time.perf_counter() - t0) * 1000)
        names = det.names
    total = sum(len(d) for d in found)
    classes = sorted({names.get(int(c), str(c)) for d in found for c in d.class_ids}) if total else []
    line = (f"{platform.machine()} {args.backend} {args.model.name}: {total} detections on {len(frames)} "
            f"demo scenes ({', '.join(classes)}); p50 {statistics.median(times):.1f} ms over {args.runs} "
            "calls, 1 thread (emulated when the kernel is not aarch64)")  # fmt: skip
    if args.reference:
        ref = [SimpleNamespace(**d) for d in json.loads(args.reference.read_text())]
        line += f"; F1 vs ONNX {f1_score(zip(ref, found, strict=True)):.3f}"
    print(line, flush=True)
    if args.save:
        keep = [
            {k: np.asarray(getattr(d, k)).tolist() for k in ("boxes", "scores", "class_ids")} for d in found
        ]
        args.save.write_text(json.dumps(keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
