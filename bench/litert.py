"""LiteRT beside ONNX Runtime on the demo model, one run: p50 of each, FP32 and INT8, same threads, with
detection agreement against ONNX Runtime FP32 (prints figures; never asserts).

    .venv/bin/python bench/litert.py [--threads N] [--runs 200]

- ONNX Runtime FP32: agent/assets/demo.onnx as the agent serves it.
- ONNX Runtime INT8: rebuilt exactly as ``fieldtui-agent engines rebuild --precision int8`` does
  (agent/engines/build.py), calibrated on demo-scene frames.
- LiteRT float32 / INT8: agent/assets/demo_float32.tflite and demo_int8.tflite, converted by
  packaging/demo-model/tflite.py (onnx2tf; INT8 full-integer, calibrated on training-scene frames).

All four are timed round-robin on the same preprocessed tensors, so a busy CPU slows them alike; each
backend's own work (LiteRT: NCHW->NHWC transpose, INT8 quantise/dequantise, box scaling) is inside the
timed call, as it is in the agent. Agreement is F1 at IoU 0.5, ONNX Runtime FP32 as the reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.bench.frames import scene_frames  # noqa: E402
from agent.engines.build import BuildOptions, BuildSource, rebuild  # noqa: E402
from agent.engines.store import EngineStore  # noqa: E402
from agent.inference.agreement import agreement  # noqa: E402
from agent.inference.detector import Detector, demo_model_path, file_sha256  # noqa: E402
from bench.engines import cpu_flags  # noqa: E402

WARMUP = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: "
                        "the agent's default, all cores but one)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=200, help="timed calls of each")
    args = parser.parse_args(argv)
    import onnxruntime
    from ai_edge_litert import interpreter  # noqa: F401 - fail here, plainly, when it is missing

    from agent.inference.backends.litert import _litert_version
    from agent.inference.backends.onnxruntime import default_threads

    threads = args.threads or default_threads()
    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print(f"ONNX Runtime {onnxruntime.__version__} (CPU); ai-edge-litert {_litert_version()} (XNNPACK); "
          f"{threads} threads each")  # fmt: skip
    frames = scene_frames(64)
    calibration, held = frames[:32], frames[32:]
    assets = demo_model_path().parent
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = demo_model_path()
        result = rebuild(
            EngineStore(work / "engines"),
            BuildSource(model, file_sha256(model)),
            BuildOptions(precision="int8", calibration=calibration, held_out=held[:4]),
        )
        ort_int8 = work / "engines" / result.engine.key / result.engine.file
        configs = [
            ("ONNX Runtime FP32", model, "onnxruntime"),
            ("ONNX Runtime INT8", ort_int8, "onnxruntime"),
            ("LiteRT float32", assets / "demo_float32.tflite", "litert"),
            ("LiteRT INT8", assets / "demo_int8.tflite", "litert"),
        ]
        detectors = [Detector.load(path, backend=b, threads=threads) for _, path, b in configs]
        try:
            tensors = [detectors[0].preprocess(f)[0] for f in held[:8]]
            for i in range(WARMUP):
                for det in detectors:
                    det.infer(tensors[i % len(tensors)])
            times: list[list[float]] = [[] for _ in detectors]
            for i in range(args.runs):
                x = tensors[i % len(tensors)]
                for k, det in enumerate(detectors):
                    t0 = time.perf_counter()
                    det.infer(x)
                    times[k].append(time.perf_counter() - t0)
            p50 = [statistics.median(t) * 1000 for t in times]
            f1s = [agreement(detectors[0], det, held) for det in detectors]
            found = sum(len(detectors[0].detect(f)) for f in held)
        finally:
            for det in detectors:
                det.close()
        print(f"\ndemo model (256x256), {args.runs} round-robin calls each, {len(held)} held-out frames "
              f"({found} ONNX Runtime FP32 detections)")  # fmt: skip
        print(
            f"  {'configuration':<20} {'size MB':>8} {'p50 ms':>8} {'vs ORT FP32':>12} {'F1 vs ORT FP32':>15}"
        )
        for (label, path, _), ms, f1 in zip(configs, p50, f1s, strict=True):
            print(f"  {label:<20} {path.stat().st_size / 1e6:8.2f} {ms:8.2f} {ms / p50[0]:11.2f}x {f1:15.3f}")
    print(f"\nload after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
