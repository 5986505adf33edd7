"""Canned benchmark runs and engine listings for the snapshot tests of the benchmark and engines screens
(fixed data; the behaviour tests run these screens against a real agent)."""

from __future__ import annotations

from fieldtui.protocol import (
    BackendInfo,
    BenchmarkConfig,
    BenchmarkList,
    BenchmarkResult,
    BenchmarkRun,
    Comparison,
    EngineFingerprint,
    EngineInfo,
    EngineList,
    EngineRebuildResult,
    LatencyStats,
    RuntimeIdentity,
    SystemUse,
)
from fieldtui.protocol.benchnoise import decide

T0 = 1_790_000_000.0
SHA = "ab" * 32

BACKENDS = [
    BackendInfo(key="onnxruntime", available=True, reason="CPUExecutionProvider", version="1.20.1"),
    BackendInfo(key="tensorrt", available=False, reason="tensorrt not importable: not a Jetson"),
    BackendInfo(key="hailo", available=True, reason="Hailo-8L at /dev/hailo0", version="4.20.0"),
]


def _result(
    i: int, backend: str, precision: str, threads: int | None, batch: int, p50: float, f1: float, prev=None
) -> BenchmarkResult:
    per_frame = p50 / batch
    fps = 1000.0 / per_frame
    comparison = None
    if prev is not None:
        p_prev, f_prev = prev, 1000.0 / (prev / batch)
        p50_pct, fps_pct = (p50 - p_prev) / p_prev * 100, (fps - f_prev) / f_prev * 100
        noise, p_value, best = 4.0, 0.002, round(p50_pct, 1)  # rounds that do not overlap
        comparison = Comparison(
            previous_id=i - 10,
            previous_created=T0 - 86400,
            p50_change_pct=round(p50_pct, 1),
            fps_change_pct=round(fps_pct, 1),
            verdict=decide(round(p50_pct, 1), noise, p_value, best),
            noise_pct=noise,
            p_value=p_value,
            best_change_pct=best,
        )
    return BenchmarkResult(
        id=i,
        config=BenchmarkConfig(backend=backend, precision=precision, threads=threads, batch=batch),
        status="ok",
        iterations=50,
        latency=LatencyStats(p50_ms=p50, p90_ms=p50 * 1.1, p95_ms=p50 * 1.15, p99_ms=p50 * 1.3, mean_ms=p50),
        per_frame_ms=round(per_frame, 3),
        fps=round(fps, 1),
        system=SystemUse(cpu_percent=180.0 if threads != 1 else 98.0, rss_mb=212.0, temperature_c=61.0),
        agreement_f1=f1,
        agreement_frames=8,
        comparison=comparison,
    )


def benchmark_list() -> BenchmarkList:
    """Today's run (against yesterday's, same model) and yesterday's."""
    today = BenchmarkRun(
        id="7c1e2f90aa31",
        created=T0 - 120,
        device_id="3f2a9c1b7d5e4a60",
        model_sha256=SHA,
        model="v7",
        job_id="job-7",
        results=[
            _result(21, "onnxruntime", "fp32", 1, 1, 41.2, 1.0, prev=40.8),
            _result(22, "onnxruntime", "fp32", 4, 1, 16.9, 1.0, prev=19.4),
            _result(23, "onnxruntime", "int8", 4, 1, 9.8, 0.96, prev=9.1),
            _result(24, "onnxruntime", "int8", 4, 8, 61.0, 0.96),
            _result(25, "hailo", "int8", None, 1, 4.1, 0.94),
            BenchmarkResult(
                id=26,
                config=BenchmarkConfig(backend="tensorrt", precision="fp16"),
                status="skipped",
                reason="tensorrt not importable: not a Jetson",
            ),
        ],
    )
    yesterday = BenchmarkRun(
        id="51d0e6b7c2f4",
        created=T0 - 86400,
        device_id="3f2a9c1b7d5e4a60",
        model_sha256=SHA,
        model="v7",
        results=[
            _result(11, "onnxruntime", "fp32", 1, 1, 40.8, 1.0),
            _result(12, "onnxruntime", "fp32", 4, 1, 19.4, 1.0),
            _result(13, "onnxruntime", "int8", 4, 1, 9.1, 0.96),
        ],
    )
    return BenchmarkList(runs=[today, yesterday])


def _fingerprint(runtime: str, precision: str, **kw) -> EngineFingerprint:
    return EngineFingerprint(
        runtime=runtime,
        source_sha256=SHA,
        precision=precision,
        input_shape=[1, 3, 640, 640],
        built=T0 - 7200,
        **kw,
    )


def engine_list() -> EngineList:
    """An INT8 ONNX Runtime engine, a current HEF, and a TensorRT plan built by an older TensorRT."""
    return EngineList(
        engines=[
            EngineInfo(
                key=f"onnxruntime-int8-{SHA[:12]}",
                file="model.onnx",
                size=3_240_112,
                fingerprint=_fingerprint(
                    "onnxruntime", "int8", runtime_version="1.20.1", device="Cortex-A76"
                ),
                stale=False,
                source_version="v7",
                model_version="v7-int8",
                p50_ms=9.8,
                fp32_p50_ms=16.9,
                agreement_f1=0.96,
            ),
            EngineInfo(
                key=f"hailo-int8-{SHA[:12]}",
                file="model.hef",
                size=9_811_456,
                fingerprint=_fingerprint(
                    "hailo", "int8", runtime_version="4.20.0", device="HAILO8L", compute="4.20.0"
                ),
                stale=False,
                source_version="v7",
                p50_ms=4.1,
                fp32_p50_ms=16.9,
                agreement_f1=0.94,
            ),
            EngineInfo(
                key=f"tensorrt-fp16-{SHA[:12]}",
                file="model.engine",
                size=7_002_624,
                fingerprint=_fingerprint(
                    "tensorrt", "fp16", runtime_version="8.6.2", device="Orin", compute="sm_87"
                ),
                stale=True,
                stale_reason="built by TensorRT 8.6.2, this device has none: rebuild on a Jetson with TensorRT 10",
                source_version="v6",
            ),
        ],
        runtimes=[
            RuntimeIdentity(
                runtime="onnxruntime",
                available=True,
                reason="CPUExecutionProvider",
                runtime_version="1.20.1",
                device="Cortex-A76",
                can_build=True,
            ),
            RuntimeIdentity(
                runtime="tensorrt",
                available=False,
                reason="tensorrt not importable: not a Jetson",
                can_build=False,
                build_note="TensorRT engines are built on the Jetson that runs them",
            ),
            RuntimeIdentity(
                runtime="hailo",
                available=True,
                reason="Hailo-8L at /dev/hailo0",
                runtime_version="4.20.0",
                device="HAILO8L",
                compute="4.20.0",
                can_build=False,
                build_note="HEFs are compiled off-device with Hailo's Dataflow Compiler",
            ),
        ],
    )


def rebuild_result() -> EngineRebuildResult:
    engine = engine_list().engines[0]
    return EngineRebuildResult(
        engine=engine,
        source_size=12_411_904,
        size=engine.size,
        p50_ms=9.8,
        fp32_p50_ms=16.9,
        speedup=16.9 / 9.8,
        agreement_f1=0.96,
        agreement_frames=32,
        calibration_frames=64,
        elapsed_s=41.3,
        log=["calibrating on 64 frames", "quantising (QDQ)", "measuring", "agreement on 32 frames"],
    )
