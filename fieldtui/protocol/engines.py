"""Engines: runtime-specific builds of a model (ONNX Runtime INT8, TensorRT plans, Hailo HEFs), each with
the fingerprint of what it was built with and for, and the rebuild job that makes them."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from fieldtui.protocol.core import Model

Precision = Literal["fp32", "fp16", "int8"]


class EngineFingerprint(Model):
    """What an engine was built with and for. Checked before every load: an engine built by another
    runtime version or for another accelerator is stale, reported as such, and never deserialised."""

    runtime: str = Field(description="backend key: onnxruntime | tensorrt | hailo")
    runtime_version: str | None = Field(default=None, description="e.g. TensorRT 10.3.0, HailoRT 4.20.0")
    device: str | None = Field(default=None, description="GPU name, Hailo arch (HAILO8L) or CPU model")
    compute: str | None = Field(
        default=None, description="GPU compute capability (sm_87) or Hailo firmware version"
    )
    source_sha256: str = Field(description="sha256 of the ONNX model the engine was built from")
    precision: Precision
    input_shape: list[int] = Field(description="the fixed input shape the engine was built for")
    built: float | None = Field(default=None, description="unix time of the build")
    version_compatible: bool = Field(
        default=False,
        description="TensorRT: built with BuilderFlag.VERSION_COMPATIBLE (loads on later TensorRT versions "
        "through the lean runtime it carries); otherwise only the exact version that built it loads it",
    )


class EngineInfo(Model):
    """One engine under ``<home>/engines/<key>/``."""

    key: str = Field(description="directory name: <runtime>-<precision>-<source sha256 prefix>")
    file: str = Field(description="the engine file's name inside its directory")
    size: int
    fingerprint: EngineFingerprint
    stale: bool
    stale_reason: str | None = Field(default=None, description="why it cannot be loaded here, and what to do")
    source_version: str | None = Field(default=None, description="model store version it was built from")
    model_version: str | None = Field(default=None, description="store version it was added as, if any")
    p50_ms: float | None = None
    fp32_p50_ms: float | None = None
    agreement_f1: float | None = Field(default=None, description="F1 at IoU 0.5 against FP32 detections")


class RuntimeIdentity(Model):
    """What this device offers a runtime: the fields a fresh engine's fingerprint would carry."""

    runtime: str
    available: bool
    reason: str
    runtime_version: str | None = None
    device: str | None = None
    compute: str | None = None
    can_build: bool = Field(description="whether this device can build engines for the runtime")
    build_note: str | None = Field(default=None, description="e.g. HEFs are compiled off-device")


class EngineList(Model):
    """``GET /v1/engines``."""

    engines: list[EngineInfo]
    runtimes: list[RuntimeIdentity]

    def summary_lines(self, rebuild_hint: str) -> list[str]:
        """The list as a technician reads it, for both command lines: one line per engine (stale ones say
        why), then the runtimes; ``rebuild_hint`` is the command that builds a first engine."""
        lines = [f"{'engine':<36} {'size':>9}  {'p50 ms':>8} {'fp32 ms':>8} {'F1':>6}  state"]
        for e in self.engines:
            state = f"STALE: {e.stale_reason}" if e.stale else "ok"
            if e.model_version and not e.stale:
                state += f" (model {e.model_version})"
            p50 = f"{e.p50_ms:.2f}" if e.p50_ms is not None else "-"
            fp32 = f"{e.fp32_p50_ms:.2f}" if e.fp32_p50_ms is not None else "-"
            f1 = f"{e.agreement_f1:.3f}" if e.agreement_f1 is not None else "-"
            lines.append(f"{e.key:<36} {e.size / 1e6:>7.2f}MB  {p50:>8} {fp32:>8} {f1:>6}  {state}")
        if not self.engines:
            lines.append(f"no engines yet: `{rebuild_hint}` builds one")
        for r in self.runtimes:
            build = "can build" if r.can_build else f"cannot build: {r.build_note or r.reason}"
            lines.append(f"runtime {r.runtime:<12} {r.runtime_version or '-':<10} {build}")
        return lines


class EngineRebuildRequest(Model):
    """``POST /v1/engines/rebuild``: build an engine for ``backend`` at ``precision`` from a store version
    (the active one by default)."""

    model_config = ConfigDict(strict=True)  # a request: 0 is not false, "5" is not 5

    backend: str = "onnxruntime"
    precision: Precision = "int8"
    version: str | None = Field(default=None, description="model store version to build from; None = active")
    calibration_frames: int = Field(default=64, ge=1, le=2048, description="INT8: frames to calibrate on")
    calibration_dir: str | None = Field(
        default=None, description="INT8: a folder of images on the device instead of the live source"
    )
    accuracy_frames: int = Field(default=32, ge=0, le=500, description="held-out frames for agreement")
    workspace_mb: int | None = Field(default=None, ge=16, le=65536, description="TensorRT memory pool limit")
    version_compatible: bool = Field(
        default=False,
        description="TensorRT: build a version-compatible plan that keeps loading after a TensorRT upgrade "
        "(carries the lean runtime; can run slower: the rebuild measures its p50 against FP32)",
    )
    activate: bool = Field(
        default=False, description="add the engine to the model store and activate it (health-checked)"
    )


class EngineRebuildResult(Model):
    """A rebuild job's result."""

    engine: EngineInfo
    source_size: int
    size: int
    p50_ms: float | None = None
    fp32_p50_ms: float | None = None
    speedup: float | None = Field(default=None, description="fp32 p50 / engine p50")
    agreement_f1: float | None = None
    agreement_frames: int = 0
    calibration_frames: int = 0
    elapsed_s: float
    model_version: str | None = Field(default=None, description="store version the engine was added as")
    activation_job: str | None = None
    log: list[str] = Field(default_factory=list, description="the build's stages, for the technician")

    def summary_lines(self, stored_note: str = "") -> list[str]:
        """What a rebuild made, for both command lines; ``stored_note`` follows "stored as model version V"
        when it was not activated (the agent's offline rebuild: "(current at the next start)")."""
        speed = "not measured"
        if self.p50_ms is not None:
            speed = f"p50 {self.p50_ms:.2f} ms vs FP32 {self.fp32_p50_ms:.2f} ms (x{self.speedup})"
        lines = [
            f"built {self.engine.key}: {self.size / 1e6:.2f} MB (source {self.source_size / 1e6:.2f} MB) "
            f"in {self.elapsed_s:.1f} s",
            f"{speed}; agreement F1 {self.agreement_f1} on {self.agreement_frames} held-out frames",
        ]
        if self.model_version:
            lines.append(
                f"stored as model version {self.model_version}"
                + (" and activated" if self.activation_job else (f" {stored_note}" if stored_note else ""))
            )
        return lines
