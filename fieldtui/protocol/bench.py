"""On-device benchmarks: requests, results, history, and their one text rendering."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from fieldtui.protocol.benchnoise import Verdict, busier, decide, effective_noise
from fieldtui.protocol.core import Model, StageTimes

# --- benchmarks -----------------------------------------------------------------------------------

BenchMode = Literal["model", "pipeline", "cameras"]


class BenchmarkRequest(Model):
    """``POST /v1/benchmarks``: every (backend, precision, threads, batch) combination is measured.

    ``mode="cameras"``: ``cameras`` synthetic demo cameras, each offering ``camera_fps``, share one copy of
    the running model for ``duration_s``, once with batching on and once with it off: total FPS and each
    camera's p50/p95 frame latency (capture to detections), with the first of ``threads``."""

    model_config = ConfigDict(strict=True)  # a request: 0 is not false, "5" is not 5

    backends: list[str] = Field(default_factory=lambda: ["onnxruntime"], min_length=1, max_length=8)
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(
        default_factory=lambda: ["fp32"], min_length=1, max_length=3
    )
    threads: list[Annotated[int, Field(ge=1, le=256)] | None] = Field(
        default_factory=lambda: [None], min_length=1, max_length=8, description="None = the runtime's default"
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        default_factory=lambda: [1], min_length=1, max_length=8
    )
    iterations: int = Field(default=50, ge=1, le=10000)
    warmup: int = Field(default=5, ge=0, le=1000)
    mode: BenchMode = "model"
    duration_s: float = Field(default=5.0, gt=0, le=600, description="pipeline mode: how long to watch")
    accuracy_frames: int = Field(default=8, ge=0, le=200, description="held-out frames for agreement")
    cameras: int = Field(default=3, ge=1, le=16, description="cameras mode: how many synthetic cameras")
    camera_fps: float = Field(default=30.0, gt=0, le=120, description="cameras mode: FPS each camera offers")


class BenchmarkConfig(Model):
    mode: BenchMode = "model"
    backend: str
    precision: str = "fp32"
    threads: int | None = None
    threads_apply: bool = Field(
        default=True, description="False: the backend has no thread knob (TensorRT, Hailo): shown as n/a"
    )
    batch: int = Field(
        default=1, description="cameras mode: the most frames one call carried (1: batching off)"
    )
    cameras: int | None = Field(default=None, description="cameras mode: how many cameras shared the model")

    def threads_label(self) -> str:
        """``n/a`` where the backend has no thread knob, ``default`` where the runtime chose, else the count."""
        if not self.threads_apply:
            return "n/a"
        return "default" if self.threads is None else str(self.threads)


class LatencyStats(Model):
    """Milliseconds per call (a whole batch: preprocess + infer + postprocess). Pipeline mode has only
    what the live pipeline's window reports (p50, p95)."""

    p50_ms: float
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None


class SystemUse(Model):
    cpu_percent: float = Field(description="process CPU time / wall time during the run (100 = one core)")
    rss_mb: float | None = Field(default=None, description="VmRSS at the end of the run")
    hwm_mb: float | None = Field(default=None, description="VmHWM: the process's peak resident memory")
    temperature_c: float | None = Field(default=None, description="hottest thermal zone; None if none")
    throttled: bool | None = Field(default=None, description="None when the device does not say")
    throttle_source: str | None = Field(default=None, description="vcgencmd | cpufreq | None")
    throttle_detail: str | None = None


class Comparison(Model):
    """This result against the previous run of the same configuration and model (the verdict:
    fieldtui/protocol/benchnoise.py)."""

    previous_id: int
    previous_created: float
    p50_change_pct: float | None = Field(description="negative = faster")
    fps_change_pct: float | None = Field(description="positive = more frames per second")
    verdict: Verdict
    noise_pct: float | None = Field(
        default=None, description="the runs' own spread (±%, per-round p50s); None: no rounds recorded"
    )
    p_value: float | None = Field(default=None, description="Mann-Whitney U on the per-round p50s")
    best_change_pct: float | None = Field(
        default=None, description="the fastest call's change (negative = faster); None: not measured"
    )


class BenchRound(Model):
    """One round of a run's timed calls (model mode) or one window of the live pipeline."""

    p50_ms: float
    fps: float | None = None
    min_ms: float | None = Field(default=None, description="the round's fastest call; None in pipeline mode")


class CameraBench(Model):
    """One camera of a multi-camera benchmark: what it got, and how long its frames took end to end."""

    name: str
    fps: float
    latency: LatencyStats | None = Field(default=None, description="frame latency, capture to detections")
    drop_rate: float = 0.0


class BenchmarkResult(Model):
    id: int | None = None
    config: BenchmarkConfig
    status: Literal["ok", "skipped", "failed"]
    reason: str | None = Field(default=None, description="why it was skipped or failed")
    iterations: int = 0
    latency: LatencyStats | None = None
    per_frame_ms: float | None = Field(default=None, description="p50 latency / batch size")
    fps: float | None = Field(default=None, description="frames (not batches) per second")
    stages_ms: StageTimes | None = None
    system: SystemUse | None = None
    drop_rate: float | None = Field(default=None, description="pipeline mode only")
    rounds: list[BenchRound] = Field(
        default_factory=list, description="per-round figures: their spread is the run's noise"
    )
    agreement_f1: float | None = Field(
        default=None,
        description="F1 at IoU 0.5 against the reference's detections, measured (None for the reference)",
    )
    agreement_frames: int = 0
    reference: bool = Field(
        default=False, description="this row is the reference itself: FP32 source model on ONNX Runtime"
    )
    model_sha256: str | None = Field(default=None, description="sha256 of the file that ran")
    engine_key: str | None = Field(default=None, description="engine store key, None for the source model")
    comparison: Comparison | None = None
    per_camera: list[CameraBench] = Field(default_factory=list, description="cameras mode: each camera")


class BenchmarkRun(Model):
    id: str
    created: float
    device_id: str
    model_sha256: str
    model: str = Field(description="the model's version or file name")
    job_id: str | None = None
    results: list[BenchmarkResult]


class BenchmarkList(Model):
    """``GET /v1/benchmarks``: runs, newest first."""

    runs: list[BenchmarkRun]


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def agreement_label(r: BenchmarkResult) -> str:
    """``reference`` for the reference row, the measured F1, or ``-`` when none was measured."""
    return "reference" if r.reference else _fmt(r.agreement_f1, ".2f")


def verdict_of(cmp: Comparison) -> Verdict:
    """The verdict every view shows, decided again from the figures (fieldtui/protocol/benchnoise.py), so
    a comparison stored by an older agent with a fixed 2 % rule does not cry wolf either."""
    return decide(cmp.p50_change_pct, cmp.noise_pct, cmp.p_value, cmp.best_change_pct)


def comparison_text(cmp: Comparison | None) -> str:
    """``same within noise (±6.2%): p50 +1.3%, fps -0.9%`` or ``worse: p50 +104.5%, fps -33.9%
    (noise ±6.2%)``: the words of the CLI table, the TUI and the visit report."""
    if cmp is None:
        return "first run"
    verdict = verdict_of(cmp)
    changes = f"p50 {_fmt(cmp.p50_change_pct, '+.1f')}%, fps {_fmt(cmp.fps_change_pct, '+.1f')}%"
    noise = f"±{effective_noise(cmp.noise_pct):.1f}%"
    if verdict == "same":
        if busier(cmp.p50_change_pct, cmp.noise_pct, cmp.best_change_pct):
            changes += f", fastest call {cmp.best_change_pct:+.1f}%: the device was busier or idler"
        return f"same within noise ({noise}): {changes}"
    return f"{verdict}: {changes} (noise {noise})"


_AGENT_REBUILD = re.compile(r"`?fieldtui-agent engines rebuild((?: --[a-z-]+ [\w.-]+)*)`?")


def with_console_hint(reason: str | None, host: str | None) -> str:
    """A skipped row's reason, with the console's command beside the on-device one
    (``fieldtui rebuild HOST --precision int8``) when it says how to build an engine."""
    reason = reason or ""
    found = _AGENT_REBUILD.search(reason)
    if found is None or "fieldtui rebuild" in reason:
        return reason
    return f"{reason}; from the console: `fieldtui rebuild {host or 'HOST'}{found.group(1)}`"


def camera_lines(result: BenchmarkResult) -> list[str]:
    """A multi-camera row's cameras, one indented line each: FPS, frame latency p50/p95, drops."""
    if not result.per_camera:
        return []
    c = result.config
    how = f"batching on (up to {c.batch} a call)" if c.batch > 1 else "batching off (cameras take turns)"
    lines = [f"    {c.cameras} cameras, {how}: total {_fmt(result.fps)} FPS"]
    for cam in result.per_camera:
        lat = cam.latency
        lines.append(
            f"    {cam.name:<10} {cam.fps:7.1f} fps  frame latency p50 {_fmt(lat.p50_ms if lat else None, '.1f')} ms"
            f"  p95 {_fmt(lat.p95_ms if lat else None, '.1f')} ms  drops {cam.drop_rate * 100:.1f}%"
        )
    return lines


def benchmark_table(run: BenchmarkRun, host: str | None = None) -> list[str]:
    """One rendering of a benchmark run for both command lines: a row per configuration, the per-frame
    latency and FPS side by side, and the change against the previous run of the same configuration.
    ``host``: the device as the console names it (its reasons then say how to act from the console)."""
    lines = [
        f"model {run.model} ({run.model_sha256[:12]}) on device {run.device_id[:12]}, run {run.id[:12]}",
        f"{'mode':<8} {'backend':<12} {'prec':<5} {'thr':>7} {'batch':>5} {'sha256':<8} {'engine':<24} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'ms/frame':>9} {'fps':>8} {'cpu%':>6} {'rss MB':>7} {'F1':>9}  vs previous",
    ]
    for r in run.results:
        c = r.config
        head = (
            f"{c.mode:<8} {c.backend:<12} {c.precision:<5} {c.threads_label():>7} {c.batch:>5} "
            f"{(r.model_sha256 or '-')[:8]:<8} {r.engine_key or '-':<24}"
        )
        if r.status != "ok":
            reason = with_console_hint(r.reason, host) if host else r.reason
            lines.append(f"{head}  {r.status}: {reason}")
            continue
        lat, sys_ = r.latency, r.system
        versus = comparison_text(r.comparison)
        lines.append(
            f"{head} {_fmt(lat.p50_ms if lat else None, '.2f'):>8} "
            f"{_fmt(lat.p99_ms if lat else None, '.2f'):>8} {_fmt(r.per_frame_ms, '.2f'):>9} "
            f"{_fmt(r.fps):>8} {_fmt(sys_.cpu_percent if sys_ else None, '.0f'):>6} "
            f"{_fmt(sys_.rss_mb if sys_ else None, '.0f'):>7} {agreement_label(r):>9}  {versus}"
        )
        lines += camera_lines(r)
    system = next((r.system for r in run.results if r.system is not None), None)
    if system is not None:
        temp = "-" if system.temperature_c is None else f"{system.temperature_c:.0f} C"
        throttled = {True: "yes", False: "no", None: "unknown"}[system.throttled]
        source = f" ({system.throttle_source}: {system.throttle_detail})" if system.throttle_source else ""
        lines.append(f"temperature {temp}, throttled {throttled}{source}")
    return lines
