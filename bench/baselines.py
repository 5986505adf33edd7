"""What the agent's pipeline is measured against (bench/pipeline.py): the best bare ``session.run`` loop,
the agent itself at each fixed thread count, the plain script a user would write, Ultralytics' own
predictor, and the bound the stage costs put on any pipeline on this machine.

Nothing here asserts; every function returns figures measured now.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.frames.metrics import AgentMetrics
from agent.frames.pipeline import Pipeline
from agent.frames.thread_policy import candidates, cores
from agent.inference.backends.onnxruntime import OnnxRuntimeBackend
from agent.inference.detector import Detector

ULTRA_PYTHON = Path(os.environ.get("FIELDTUI_BENCH_ULTRALYTICS_PYTHON", "/nonexistent"))


@dataclass
class Bare:
    threads: int
    spinning: bool
    fps: float
    cpu_ms: float  # process CPU per inference (all its threads, spinning included)

    @property
    def label(self) -> str:
        return (
            f"{self.threads} thread{'s' * (self.threads != 1)}, spinning {'on' if self.spinning else 'off'}"
        )


def bare_configs(model: Path, tensor: np.ndarray, seconds: float) -> list[Bare]:
    """``session.run`` in a loop on one ready tensor, for every thread count and spinning on and off:
    each configuration for about ``seconds`` after a warm-up."""
    out = []
    for threads, spinning in candidates(cores()):
        backend = OnnxRuntimeBackend(model, threads=threads)
        backend.reconfigure(threads, spinning)
        try:
            for _ in range(3):
                backend.infer(tensor)
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while (elapsed := time.perf_counter() - t0) < seconds or n < 3:
                backend.infer(tensor)
                n += 1
            out.append(Bare(threads, spinning, n / elapsed, (time.process_time() - c0) * 1000 / n))
        finally:
            backend.close()
    return out


@dataclass
class AgentRun:
    fps: float  # frames after the thread policy settled / the time they took
    frames: int
    policy: str  # what the thread policy chose and why
    settle_s: float  # from start until the policy settled


def agent_fps(model: Path, video: Path, threads: int | None = None) -> AgentRun:
    """The agent's pipeline over ``video`` as fast as it goes (a file applies back-pressure), with its
    defaults (``threads`` None: the thread policy measures) or a fixed ``--threads``. The FPS counts the
    frames after the policy settled, so the calibration's own trials are not in the figure; how long
    it took is reported beside it."""
    detector = Detector.load(model)
    pipeline = Pipeline(detector, str(video), metrics=AgentMetrics(), fast=True, threads=threads)
    try:
        t_start = time.perf_counter()
        pipeline.start()
        while (policy := pipeline.tuner.status()).mode not in ("measured", "fixed", "n/a"):
            if pipeline.wait_finished(0):
                raise RuntimeError(f"{video.name} ended before the thread policy settled: use more frames")
            time.sleep(0.005)
        f0, t0 = pipeline.stats.frames_total, time.perf_counter()
        if not pipeline.wait_finished(1800):
            raise RuntimeError("the pipeline did not finish the video in 30 minutes")
        t1 = time.perf_counter()
        frames = pipeline.stats.frames_total - f0
        return AgentRun(frames / (t1 - t0), frames, policy.reason, t0 - t_start)
    finally:
        pipeline.stop()
        detector.close()


def plain_script_fps(
    model: Path, video: Path, max_frames: int, conf: float = 0.25, iou: float = 0.7
) -> float:
    """The loop a user writes first, one step after the other: read a frame, letterbox it, run the
    session (ONNX Runtime's default options), decode and NMS with OpenCV. FPS after two warm-up frames."""
    import cv2
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    size = int(inp.shape[2])
    cap = cv2.VideoCapture(str(video))
    n, t0 = 0, None
    try:
        while n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            r = min(size / h, size / w)
            nh, nw = round(h * r), round(w * r)
            resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
            top, left = (size - nh) // 2, (size - nw) // 2
            padded = cv2.copyMakeBorder(resized, top, size - nh - top, left, size - nw - left,
                                        cv2.BORDER_CONSTANT, value=(114, 114, 114))  # fmt: skip
            blob = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32) / 255.0
            out = session.run(None, {inp.name: blob})[0][0].T  # [N, 4 + nc]
            scores = out[:, 4:].max(1)
            keep = scores >= conf
            boxes, classes = out[keep, :4], out[keep, 4:].argmax(1)
            xywh = np.column_stack(
                [boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 2:]]
            )
            picked = cv2.dnn.NMSBoxesBatched(
                xywh.tolist(), scores[keep].tolist(), classes.tolist(), conf, iou
            )
            _ = [(classes[i], xywh[i]) for i in np.asarray(picked).reshape(-1)]
            n += 1
            if n == 2:
                t0 = time.perf_counter()
    finally:
        cap.release()
    if t0 is None or n <= 2:
        raise RuntimeError(f"{video.name} has too few frames for the plain script")
    return (n - 2) / (time.perf_counter() - t0)


ULTRA_SCRIPT = """
import sys, time
from ultralytics import YOLO
model, video, imgsz = sys.argv[1], sys.argv[2], int(sys.argv[3])
n, t0 = 0, None
for _ in YOLO(model, task="detect").predict(video, stream=True, verbose=False, imgsz=imgsz):
    n += 1
    if n == 2:
        t0 = time.perf_counter()
print((n - 2) / (time.perf_counter() - t0))
"""


def ultralytics_available() -> tuple[bool, str]:
    if not ULTRA_PYTHON.is_file():
        return False, "set FIELDTUI_BENCH_ULTRALYTICS_PYTHON to a Python with ultralytics installed"
    r = subprocess.run([str(ULTRA_PYTHON), "-c", "import ultralytics; print(ultralytics.__version__)"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    if r.returncode != 0:
        return False, f"{ULTRA_PYTHON} cannot import ultralytics: {r.stderr.strip().splitlines()[-1:]}"
    return True, f"ultralytics {r.stdout.strip()}"


def ultralytics_export(cfg: str, out_dir: Path, imgsz: int = 640) -> Path:
    """Export ``cfg`` (an Ultralytics model yaml: the architecture with its initial weights, since no
    weights can be downloaded here) to ONNX in ``out_dir``; nothing is kept after the bench."""
    script = (
        "import sys; from ultralytics import YOLO; "
        "print(YOLO(sys.argv[1]).export(format='onnx', imgsz=int(sys.argv[2]), simplify=False))"
    )
    r = subprocess.run([str(ULTRA_PYTHON), "-c", script, cfg, str(imgsz)], cwd=out_dir, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"ultralytics export of {cfg} failed: {r.stderr.strip()[-400:]}")
    return Path(out_dir) / Path(r.stdout.strip().splitlines()[-1]).name


def ultralytics_fps(model: Path, video: Path, imgsz: int = 640) -> float:
    """Ultralytics' own predictor, ``YOLO(onnx).predict(video, stream=True)``, in its own environment."""
    with tempfile.TemporaryDirectory(prefix="fieldtui-bench-ultra-") as tmp:
        r = subprocess.run([str(ULTRA_PYTHON), "-c", ULTRA_SCRIPT, str(model), str(video), str(imgsz)],
                           cwd=tmp, capture_output=True, text=True, timeout=1800)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"ultralytics predict failed: {r.stderr.strip()[-400:]}")
    return float(r.stdout.strip().splitlines()[-1])


@dataclass
class StageCosts:
    decode_ms: float
    preprocess_ms: float
    infer_ms: float  # one thread: wall = CPU
    postprocess_ms: float

    def bound_fps(self, n: int) -> tuple[float, str]:
        """The most any pipeline can do on ``n`` cores with these costs: the CPU they add up to, spread
        over every core, or the slowest stage on a core of its own, whichever binds."""
        total = self.decode_ms + self.preprocess_ms + self.infer_ms + self.postprocess_ms
        slowest = max(self.decode_ms, self.preprocess_ms, self.infer_ms, self.postprocess_ms)
        by_cpu, by_stage = n * 1000 / total, 1000 / slowest
        if by_cpu <= by_stage:
            return by_cpu, f"{n} cores / {total:.2f} ms of CPU per frame"
        return by_stage, f"the slowest stage, {slowest:.2f} ms"


def stage_costs(model: Path, video: Path, frames: int = 60) -> StageCosts:
    """Each stage's cost per frame measured alone, one after the other on one thread."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    images, t0 = [], time.perf_counter()
    while len(images) < frames:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    decode = (time.perf_counter() - t0) * 1000 / max(1, len(images))
    cap.release()
    with Detector.load(model, threads=1) as det:
        pre, inf, post = [], [], []
        for image in images:
            a = time.perf_counter()
            tensor, lb = det.preprocess(image)
            b = time.perf_counter()
            outputs = det.infer(tensor)
            c = time.perf_counter()
            det.postprocess(outputs, lb)
            d = time.perf_counter()
            pre.append(b - a)
            inf.append(c - b)
            post.append(d - c)
    med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    return StageCosts(decode, med(pre), med(inf), med(post))


if __name__ == "__main__":  # pragma: no cover - a helper module, run bench/pipeline.py
    sys.exit("run bench/pipeline.py")
