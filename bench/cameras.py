"""Real cameras going wrong: how soon the agent says so, and how soon it is back, in one run.

    .venv/bin/python bench/cameras.py [--rounds 3]

Against GStreamer's RTSP server (tests/rtsp_server.py, an ffmpeg-made H.264 clip, 320x240 at 15 fps)
and ffmpeg's MJPEG-over-HTTP server, each in its own process on 127.0.0.1, with the agent's real
Pipeline (demo model) reading them. Per round:

1. Freeze (SIGSTOP: the connection stays open, nothing more is sent). Printed: seconds from the freeze
   to the last frame the capture still got (what FFmpeg had buffered), and to the status saying the
   source is down ("stream stalled"), next to what a bare ``cv2.VideoCapture`` with OpenCV's own
   timeouts does on the same kind of freeze: seconds until its ``read()`` first returns False (the
   reads before it keep returning flushed pictures).
2. RTSP kill and restart on the same port after ``--down`` seconds (a camera rebooting). Printed: seconds
   from the restart to frames flowing in the pipeline again; they depend on where the reconnect
   backoff (0.5 s doubling to 10 s, with jitter) stands when the server returns.

Loopback on a shared machine: the figures are the agent's own timeouts and backoff, not a LAN.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.frames.pipeline import Pipeline  # noqa: E402
from agent.frames.sources.base import STALL_S  # noqa: E402
from agent.inference.detector import Detector  # noqa: E402
from tests.rtsp import FfmpegMjpeg, RtspServer, h264_clip, rtsp_missing  # noqa: E402


def wait(pred: Callable[[], object], timeout: float) -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            return float("nan")
        time.sleep(0.01)
    return time.monotonic() - start


def freeze_round(detector: Detector, server) -> tuple[float, float]:
    """(seconds to the last frame, seconds to the stall report) after a freeze."""
    p = Pipeline(detector, server.url())
    p.start()
    try:
        wait(lambda: p.stats.frames_total > 10, 30)
        server.freeze()
        frozen = time.monotonic()
        reported = wait(lambda: not p.status().source.up, 60)
        last = (p.capture.last_frame_at or frozen) - frozen
        return last, reported
    finally:
        p.stop()
        server.kill()


def bare_opencv_freeze(clip: Path) -> float:
    """A bare cv2.VideoCapture with OpenCV's read timeout at the agent's stall timeout and no FFmpeg
    options (what the agent relied on before): seconds from the freeze to read() returning False."""
    import subprocess

    code = f"""
import os, sys, time
sys.path.insert(0, {str(REPO)!r})
os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
import cv2
from tests.rtsp import RtspServer
with RtspServer(__import__("pathlib").Path({str(clip)!r})) as s:
    cap = cv2.VideoCapture(s.url(), cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000,
                           cv2.CAP_PROP_READ_TIMEOUT_MSEC, {int(STALL_S * 1000)}])
    for _ in range(10):
        cap.read()
    s.freeze(); t = time.monotonic()
    while cap.read()[0] and time.monotonic() - t < 60:
        pass
    print(time.monotonic() - t)
    s.thaw(); cap.release()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def restart_round(detector: Detector, clip: Path, down: float) -> float:
    server = RtspServer(clip).start()
    p = Pipeline(detector, server.url())
    p.start()
    try:
        wait(lambda: p.stats.frames_total > 5, 30)
        server.kill()
        wait(lambda: p.state == "reconnecting", 30)
        time.sleep(down)
        before = p.stats.frames_total
        server.start()  # returns once it listens: the clock starts there
        return wait(lambda: p.state == "running" and p.stats.frames_total > before, 60)
    finally:
        p.stop()
        server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down", type=float, nargs="+", default=[1.0, 5.0], help="seconds the camera is off")
    args = parser.parse_args()
    if reason := rtsp_missing():
        print(f"skipped: {reason}")
        return 0
    fmt = lambda xs: f"median {statistics.median(xs):5.2f} s  (" + ", ".join(f"{x:.2f}" for x in xs) + ")"  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp, Detector.load(None) as detector:
        clip = h264_clip(Path(tmp) / "clip.mp4", seconds=60)
        print(
            f"stall timeout (every live source): {STALL_S:.1f} s; {args.rounds} rounds; cpus {os.cpu_count()}"
        )
        rtsp = [freeze_round(detector, RtspServer(clip).start()) for _ in range(args.rounds)]  # killed inside
        print(f"RTSP  freeze -> last buffered frame      {fmt([r[0] for r in rtsp])}")
        print(f"RTSP  freeze -> status says stalled       {fmt([r[1] for r in rtsp])}")
        bare = [bare_opencv_freeze(clip) for _ in range(args.rounds)]
        print(f"RTSP  freeze -> bare OpenCV read() False  {fmt(bare)}")
        mjpeg = [freeze_round(detector, FfmpegMjpeg(clip).start()) for _ in range(args.rounds)]
        print(f"MJPEG freeze -> last buffered frame      {fmt([r[0] for r in mjpeg])}")
        print(f"MJPEG freeze -> status says stalled       {fmt([r[1] for r in mjpeg])}")
        for down in args.down:
            back = [restart_round(detector, clip, down) for _ in range(args.rounds)]
            print(f"RTSP  server back after {down:.0f} s off -> frames again  {fmt(back)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
