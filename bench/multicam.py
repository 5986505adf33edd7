"""Several cameras on one detector (agent/frames/multicam.py), measured side by side in one run.

    .venv/bin/python bench/multicam.py [--seconds 6] [--cameras 3] [--fps 30] [--threads 2]

Printed, for the embedded demo model (fixed batch 1) and a copy of it with a dynamic batch axis:

1. N demo cameras each offering ``--fps``: total processed FPS, next to a bare ``session.run`` loop at
   the batch size the agent chose (same model, same threads, ready tensors), and their ratio.
2. Dynamic-batch model: total FPS with batching on and off, and batched / unbatched; then a copy built
   for a fixed batch of 3 (as an engine or an ONNX exported with batch=3 is), its calls padded when
   fewer frames are ready.
3. Overload (cameras offering 200 FPS each): every camera's processed FPS and the spread
   (max - min) / max.
   Batching is also compared under the same overload.
4. Process RSS (VmHWM, the peak) of a child process running N cameras and of one running 1 camera.

Nothing here asserts; the figures are measured now, on whatever else this machine is doing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.core.cameras import CameraSpec  # noqa: E402
from agent.frames.multicam import MultiPipeline  # noqa: E402
from agent.frames.sources.demo import DemoSource  # noqa: E402
from agent.inference.detector import Detector  # noqa: E402


def dynamic_copy(out_dir: Path, batch: int | str = "batch") -> Path:
    """The demo model with its batch axis dynamic, or fixed at ``batch`` (tests/modelgen.py makes it)."""
    from tests.modelgen import demo_with_batch

    return demo_with_batch(out_dir, batch)


def demo_uri(seed: int, fps: float, size: str) -> str:
    return f"demo:?fps={fps:g}&size={size}&seed={seed}"


def bare_fps(det: Detector, batch: int, size: str, seconds: float) -> float:
    """Frames per second of ``session.run`` on a ready tensor of ``batch`` demo frames."""
    w, h = (int(v) for v in size.split("x"))
    src = DemoSource(size=(w, h))
    src.open()
    tensor, _ = det.preprocess(src.read().image)
    src.close()
    tensor = np.concatenate([tensor] * batch)
    for _ in range(3):
        det.infer(tensor)
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or n < 3:
        det.infer(tensor)
        n += 1
    return n * batch / elapsed


def run_cameras(
    det: Detector, uris: list[str], seconds: float, max_batch: int = 8
) -> tuple[list[float], int, float]:
    """Per-camera processed FPS over ``seconds`` after a 2 s warm-up, the batch size chosen, and the
    total FPS the cameras delivered (processed + dropped: what the synthetic cameras could render)."""
    mp = MultiPipeline(det, [CameraSpec(f"c{i}", u) for i, u in enumerate(uris)], max_batch=max_batch)
    mp.start()
    try:
        time.sleep(2.0)
        names = [s.name for s in mp.cameras()]
        start = [mp.sample(n) for n in names]
        t0 = time.monotonic()
        time.sleep(seconds)
        end = [mp.sample(n) for n in names]
        elapsed = time.monotonic() - t0
        per = [(b.frames_total - a.frames_total) / elapsed for a, b in zip(start, end, strict=True)]
        delivered = sum(
            b.frames_total + b.dropped_total - a.frames_total - a.dropped_total
            for a, b in zip(start, end, strict=True)
        )
        return per, mp.max_batch, delivered / elapsed
    finally:
        mp.stop()


def rss_child(n: int, fps: float, size: str, threads: int, seconds: float) -> None:
    det = Detector.load(None, threads=threads)
    run_cameras(det, [demo_uri(i, fps, size) for i in range(n)], seconds)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            print(int(line.split()[1]) / 1024)  # MiB


def rss_of(n: int, args: argparse.Namespace) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n), "--fps", str(args.fps), "--size", args.size,
         "--threads", str(args.threads), "--seconds", "3"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def spread(fps: list[float]) -> float:
    return (max(fps) - min(fps)) / max(fps) if max(fps) > 0 else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.fps, args.size, args.threads, args.seconds)
        return 0
    n, s = args.cameras, args.seconds
    uris = [demo_uri(i, args.fps, args.size) for i in range(n)]
    print(
        f"{n} demo cameras at {args.fps:g} FPS, {args.size}, {args.threads} intra-op threads, {s:g} s windows"
    )

    with Detector.load(None, threads=args.threads) as det:
        per, batch, offered = run_cameras(det, uris, s)
        bare = bare_fps(det, batch, args.size, s)
        print(f"\n1. demo model (batch {batch} chosen)")
        print(f"   cameras: total {sum(per):7.1f} FPS  per camera {', '.join(f'{f:.1f}' for f in per)}")
        print(f"   cameras delivered {offered:7.1f} FPS: processed / delivered {sum(per) / offered:.2f}")
        print(f"   bare session.run at batch {batch}: {bare:7.1f} FPS")
        print(f"   total / bare: {sum(per) / bare:.2f}")
        over, _, delivered = run_cameras(det, [demo_uri(i, 200, args.size) for i in range(n)], s)
        print(f"\n3. overload (each camera offers 200 FPS): per camera {', '.join(f'{f:.1f}' for f in over)}")
        print(f"   spread (max - min) / max: {spread(over):.1%}")
        print(
            f"   total {sum(over):.1f} FPS of {delivered:.1f} the cameras delivered; / bare at batch {batch}: "
            f"{sum(over) / bare:.2f} (the demo cameras render on the same cores)"
        )

    with (
        tempfile.TemporaryDirectory() as tmp,
        Detector.load(dynamic_copy(Path(tmp)), threads=args.threads) as det,
    ):
        on, batch, _ = run_cameras(det, uris, s)
        off, _, _ = run_cameras(det, uris, s, max_batch=1)
        bare_b = bare_fps(det, min(batch, n), args.size, s)
        print(f"\n2. dynamic-batch copy of the demo model (batch up to {batch})")
        print(f"   batching on:  total {sum(on):7.1f} FPS  per camera {', '.join(f'{f:.1f}' for f in on)}")
        print(f"   batching off: total {sum(off):7.1f} FPS  per camera {', '.join(f'{f:.1f}' for f in off)}")
        print(f"   bare session.run at batch {min(batch, n)}: {bare_b:7.1f} FPS")
        print(f"   batched / unbatched: {sum(on) / sum(off):.2f}   batched / bare: {sum(on) / bare_b:.2f}")
        hot = [demo_uri(i, 200, args.size) for i in range(n)]
        hot_on, _, _ = run_cameras(det, hot, s)
        hot_off, _, _ = run_cameras(det, hot, s, max_batch=1)
        print(f"   overload (200 FPS each): batching on {sum(hot_on):.1f} FPS, off {sum(hot_off):.1f} FPS")
        print(
            f"   batched / unbatched {sum(hot_on) / sum(hot_off):.2f}, batched / bare {sum(hot_on) / bare_b:.2f}"
        )

    with (
        tempfile.TemporaryDirectory() as tmp,
        Detector.load(dynamic_copy(Path(tmp), 3), threads=args.threads) as det,
    ):
        on, batch, _ = run_cameras(det, uris, s)
        off, _, _ = run_cameras(det, uris, s, max_batch=1)
        bare_3 = bare_fps(det, 3, args.size, s)
        print(
            f"\n2b. the demo model built for a fixed batch of 3 (batch {batch} chosen; fewer frames are padded)"
        )
        print(f"   batching on:  total {sum(on):7.1f} FPS  per camera {', '.join(f'{f:.1f}' for f in on)}")
        print(f"   batching off: total {sum(off):7.1f} FPS (each call padded to 3 frames)")
        print(f"   bare session.run at batch 3: {bare_3:7.1f} FPS;  batched / bare {sum(on) / bare_3:.2f}")

    one, many = rss_of(1, args), rss_of(n, args)
    print(f"\n4. peak RSS: 1 camera {one:.0f} MiB, {n} cameras {many:.0f} MiB, ratio {many / one:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
