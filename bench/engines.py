"""INT8 engines against FP32 on this CPU, one run: p50 of each, the ratio, detection agreement (prints
figures; never asserts).

    .venv/bin/python bench/engines.py            # demo model + the 640x640 [1,84,8400] model
    .venv/bin/python bench/engines.py --quick    # demo model only, fewer timed calls

Each model is rebuilt exactly as ``fieldtui-agent engines rebuild --precision int8`` does
(agent/engines/build.py: fixed shapes, quant_pre_process, static INT8 QDQ per-channel calibrated on demo
scene frames preprocessed as the pipeline does, the graph-optimised model saved), into a temporary
engine store. Then FP32 (the source model, as the agent serves it) and the INT8 engine are timed
alternately on the same tensors, so a busy CPU slows both alike, and their detections compared on
held-out frames (F1 at IoU 0.5, FP32 as the reference; "detections" says how many FP32 found, since
agreement on frames where neither finds anything means nothing).

INT8 pays off where the CPU has integer dot-product instructions (VNNI on x86, dotprod/i8mm on Arm):
the flags this CPU has are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.bench.frames import scene_frames  # noqa: E402
from agent.engines.build import BuildOptions, BuildSource, alternating_p50s, rebuild  # noqa: E402
from agent.engines.store import EngineStore  # noqa: E402
from agent.inference.agreement import agreement  # noqa: E402
from agent.inference.detector import Detector, demo_model_path, file_sha256  # noqa: E402
from bench.convnet import make_conv_detector  # noqa: E402

CALIBRATION_FRAMES = 32
HELD_OUT_FRAMES = 32


def cpu_flags() -> str:
    """The CPU model and the instruction-set flags INT8 kernels care about."""
    name, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == platform.machine():
                name = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
    return f"{name}; {', '.join(f for f in wanted if f in flags) or 'no int8 dot-product flags'}"


def compare(label: str, model: Path, work: Path, runs: int) -> None:
    frames = scene_frames(CALIBRATION_FRAMES + HELD_OUT_FRAMES)
    calibration, held = frames[:CALIBRATION_FRAMES], frames[CALIBRATION_FRAMES:]
    started = time.monotonic()
    result = rebuild(
        EngineStore(work / "engines"),
        BuildSource(model, file_sha256(model)),
        BuildOptions(precision="int8", calibration=calibration, held_out=held[:4]),
    )
    build_s = time.monotonic() - started
    engine = work / "engines" / result.engine.key / result.engine.file
    with Detector.load(model) as fp32, Detector.load(engine) as int8:
        tensors = [fp32.preprocess(f)[0] for f in held[:8]]
        int8_ms, fp32_ms = alternating_p50s(fp32, int8, tensors, runs=runs)
        f1 = agreement(fp32, int8, held)
        found = sum(len(fp32.detect(f)) for f in held)
    print(f"\n{label}")
    print(f"  size            FP32 {model.stat().st_size / 1e6:7.2f} MB   INT8 {result.size / 1e6:7.2f} MB")
    print(f"  build           {build_s:.1f} s ({CALIBRATION_FRAMES} calibration frames)")
    print(f"  inference p50   FP32 {fp32_ms:7.2f} ms   INT8 {int8_ms:7.2f} ms   ({runs} alternating calls)")
    print(f"  ratio           INT8/FP32 {int8_ms / fp32_ms:.2f}   (speed-up x{fp32_ms / int8_ms:.2f})")
    print(
        f"  agreement       F1 {f1:.3f} at IoU 0.5 on {len(held)} held-out frames ({found} FP32 detections)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo model only, 50 timed calls")
    args = parser.parse_args(argv)
    import onnxruntime

    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print(f"ONNX Runtime {onnxruntime.__version__}, CPUExecutionProvider, default threads")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "demo").mkdir()
        compare(
            "demo model (agent/assets/demo.onnx, 256x256)",
            demo_model_path(),
            work / "demo",
            50 if args.quick else 200,
        )
        if not args.quick:
            (work / "conv").mkdir()
            big = make_conv_detector(work / "conv640.onnx", imgsz=640, nc=80)
            compare(
                "640x640 model, output [1,84,8400] (bench/convnet.py, random weights)", big, work / "conv", 40
            )
    print(f"\nload after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
