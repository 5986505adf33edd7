"""The base model and the live vocabulary: detections, pipeline status and samples, jobs, logs, auth,
discovery and device records."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

API_VERSION = "v1"
SERVICE_TYPE = "_fieldtui._tcp.local."
DEFAULT_PORT = 8470

HealthLevel = Literal["ok", "degraded", "failing"]
PipelineState = Literal["stopped", "starting", "running", "reconnecting", "failed"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
LinkKind = Literal["https", "http", "ssh"]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def first_error(err: ValidationError) -> str:
    """A validation error as one line a technician can act on: the first field and what is wrong with it
    ("calibration_frames: Input should be less than or equal to 2048"). Never the value given, which may
    be a key or a password."""
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "body"
    return f"{where}: {e['msg']}"


# --- detections ---------------------------------------------------------------------------------


class Detection(Model):
    class_id: int
    class_name: str
    confidence: float
    box: list[float] = Field(description="x1, y1, x2, y2 in original image pixels")


class ImageResult(Model):
    image: str
    detections: list[Detection]


class DetectResult(Model):
    """What ``fieldtui-agent detect --json`` prints."""

    results: list[ImageResult]


# --- live pipeline --------------------------------------------------------------------------------


class CameraHealth(Model):
    """Cheap image statistics that tell a dirty or blocked camera from scene or model drift."""

    brightness: float = Field(description="mean luma, 0-255")
    sharpness: float = Field(description="variance of the Laplacian")
    sharpness_ratio: float | None = Field(
        default=None, description="sharpness against the source's own running baseline (1.0 = as usual)"
    )
    frozen: bool = False
    covered: bool = False
    ok: bool = True
    reasons: list[str] = []


class StageTimes(Model):
    """Milliseconds per stage, averaged over the sample window."""

    capture: float = 0.0
    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0


class Sample(Model):
    """One telemetry sample (SSE ``sample``, about 2 Hz)."""

    ts: float
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    stages_ms: StageTimes
    confidence_avg: float | None = Field(description="rolling mean confidence; None before any detection")
    detections: dict[str, int] = Field(default_factory=dict, description="per class, in the window")
    drop_rate: float = Field(description="dropped / captured frames in the window")
    frames_total: int = 0
    dropped_total: int = 0
    camera: CameraHealth | None = None
    camera_name: str | None = Field(default=None, description="which camera, on a multi-camera agent")


class SourceStatus(Model):
    uri: str = Field(description="redacted: credentials never leave the device")
    kind: str
    up: bool
    reason: str | None = Field(default=None, description="why frames stopped, when they did")
    reconnects: int = 0
    width: int | None = None
    height: int | None = None


class ModelInfo(Model):
    version: str | None = None
    path: str
    sha256: str | None = None
    format: str = "onnx"
    backend: str
    input_shape: list[int]
    input_dtype: str
    layout: str
    names: dict[int, str]


class ThreadTrial(Model):
    """One configuration the thread policy ran the live pipeline with, and what it measured."""

    threads: int
    spinning: bool
    fps: float = Field(description="frames the pipeline finished per second with this configuration")
    cpu_ms_per_frame: float | None = Field(default=None, description="process CPU time per frame")
    frames: int = 0
    dropped: int = Field(default=0, description="live sources: frames the pipeline could not take meanwhile")


class ThreadPolicy(Model):
    """How many intra-op threads inference runs with, and why: measured on this model, machine and
    source (``measured``), set by the technician (``fixed``), being measured now (``measuring``), or
    not a knob of this backend (``n/a``)."""

    mode: Literal["measuring", "measured", "fixed", "default", "n/a"]
    threads: int | None = None
    spinning: bool | None = None
    reason: str = ""
    fps: float | None = Field(default=None, description="pipeline FPS measured with the chosen configuration")
    trials: list[ThreadTrial] = Field(default_factory=list)
    frame_size: list[int] | None = Field(default=None, description="[width, height] measured on")
    took_s: float | None = None
    measured_at: float | None = None


class ThreadsChange(Model):
    """``PUT /v1/pipeline/threads``: a fixed intra-op thread count, or None to measure again."""

    model_config = ConfigDict(strict=True)  # a request: true is not 1

    threads: int | None = Field(default=None, ge=1, le=256)


class PipelineStatus(Model):
    state: PipelineState
    source: SourceStatus | None = None
    model: ModelInfo | None = None
    sample: Sample | None = None
    error: str | None = None
    started_at: float | None = None
    threads: ThreadPolicy | None = None
    read_only: str | None = Field(
        default=None,
        description="why changes cannot be saved (a full disk) and what to delete; None normally",
    )


class HealthReport(Model):
    """The agent's one verdict (agent/server/verdict.py): every console surface shows this, never its own."""

    status: HealthLevel
    reasons: list[str] = Field(default=[], description="worst first; empty when ok")
    notes: list[str] = Field(default=[], description="worth knowing, not a fault: a probation under way")
    version: str
    uptime_s: float
    # Who answered: the same id and name mDNS advertises (no secret), so a console that finds the
    # agent by probing an address range merges it with the saved and mDNS records of the same device.
    # None from agents older than the probe.
    id: str | None = None
    name: str | None = None


class BackendInfo(Model):
    key: str
    available: bool
    reason: str
    version: str | None = None
    providers: list[str] = []


class DeviceInfo(Model):
    id: str
    name: str
    version: str
    hostname: str
    platform: str
    machine: str
    python: str
    accelerators: list[str] = []
    backends: list[BackendInfo] = []
    api_url: str | None = None
    tls_fingerprint: str | None = None


# --- jobs, logs, auth -----------------------------------------------------------------------------


class Job(Model):
    id: str
    kind: str
    state: JobState
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    stage: str = ""
    created: float
    started: float | None = None
    finished: float | None = None
    params: dict[str, Any] = {}
    result: dict[str, Any] | None = None
    error: str | None = None


class JobList(Model):
    """``GET /v1/jobs``: recent jobs, newest first."""

    jobs: list[Job]


class LogLine(Model):
    ts: float
    level: str
    logger: str
    message: str

    def text(self) -> str:
        """One line as both command lines print it (local time)."""
        import time

        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.ts))
        return f"{stamp} {self.level:<7} {self.logger}: {self.message}"


class LogPage(Model):
    lines: list[LogLine]


class TokenInfo(Model):
    """What ``fieldtui-agent token --json`` prints: all the console needs to pair."""

    device_id: str
    name: str
    token: str
    api_url: str
    tls_fingerprint: str | None = None


class Problem(Model):
    """RFC 9457 problem details, the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None


class SourceChange(Model):
    model_config = ConfigDict(strict=True)  # a request: 0 is not false, "5" is not 5
    uri: str


class Ack(Model):
    ok: bool = True
    message: str = ""


# --- discovery ------------------------------------------------------------------------------------


class SSHEndpoint(Model):
    """How the console reaches a device over SSH (saved at pairing). ``host`` may be a ~/.ssh/config alias;
    ``None`` fields come from ~/.ssh/config or the defaults. ``agent_home`` is passed as ``--home``.
    ``sudo``: the SSH user cannot read the agent home (the systemd service's), so every agent command runs
    as ``sudo -n fieldtui-agent ...`` (set by pairing when it had to)."""

    host: str
    port: int | None = None
    user: str | None = None
    agent_home: str | None = None
    sudo: bool = False


class AgentPaths(Model):
    """What ``fieldtui-agent home --json`` prints: where things live in the agent home on the device."""

    home: str
    staging: str = Field(description="models/.staging: where an SFTP upload lands before `models add`")
    log_file: str
    running: bool = Field(description="an agent is serving from this home right now")


class DeviceRecord(Model):
    """A device as the console knows it: from mDNS, saved, or added by hand."""

    id: str | None = None
    name: str
    host: str
    port: int = DEFAULT_PORT
    addresses: list[str] = []
    tls: bool = False
    tls_fingerprint: str | None = None
    version: str | None = None
    model: str | None = None
    backend: str | None = None
    # "probe": answered GET /v1/health when `discover --probe` swept an address range (no mDNS needed)
    origin: list[Literal["mdns", "saved", "manual", "ssh", "probe"]] = []
    lost: bool = False
    last_seen: float | None = None
    ssh: SSHEndpoint | None = None

    @property
    def api_url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


class DiscoveryResult(Model):
    devices: list[DeviceRecord]
    hints: list[str] = Field(default_factory=list, description="what to check when mDNS finds nothing")


class DeviceStatus(Model):
    """What ``fieldtui status HOST --json`` prints: who the device is, how it feels, what it runs."""

    device: DeviceInfo
    health: HealthReport
    status: PipelineStatus
