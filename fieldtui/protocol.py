"""The wire vocabulary shared by the agent, the console and the SSH ``--json`` path.

Pydantic models only, no heavy imports: the agent imports this module, and so does every console
service. What the agent returns over HTTP, what ``fieldtui-agent ... --json`` prints and what the console
parses are these models and nothing else, so a status is never spelled two ways.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "v1"
SERVICE_TYPE = "_fieldtui._tcp.local."
DEFAULT_PORT = 8470

HealthLevel = Literal["ok", "degraded", "failing"]
PipelineState = Literal["stopped", "starting", "running", "reconnecting", "failed"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
LinkKind = Literal["https", "http", "ssh"]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


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


class PipelineStatus(Model):
    state: PipelineState
    source: SourceStatus | None = None
    model: ModelInfo | None = None
    sample: Sample | None = None
    error: str | None = None
    started_at: float | None = None


class HealthReport(Model):
    status: HealthLevel
    reasons: list[str] = []
    version: str
    uptime_s: float


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
    uri: str


class Ack(Model):
    ok: bool = True
    message: str = ""


# --- discovery ------------------------------------------------------------------------------------


class SSHEndpoint(Model):
    """How the console reaches a device over SSH (saved at pairing). ``host`` may be a ~/.ssh/config alias;
    ``None`` fields come from ~/.ssh/config or the defaults. ``agent_home`` is passed as ``--home``."""

    host: str
    port: int | None = None
    user: str | None = None
    agent_home: str | None = None


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
    origin: list[Literal["mdns", "saved", "manual", "ssh"]] = []
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


# --- model store ----------------------------------------------------------------------------------

ModelFormat = Literal["onnx", "engine", "hef"]
HistoryAction = Literal["upload", "activate", "rollback", "auto_rollback", "remove", "startup"]
HistoryOutcome = Literal[
    "started",  # in progress (a row left so by a crash is closed as "interrupted" at the next start)
    "stored",  # an upload verified and in the store
    "refused",  # an upload or activation refused before anything changed
    "pending",  # made current while no agent ran: loaded and checked at the next start
    "probation",  # serving, watched against the previous model
    "good",  # serving and proven (probation passed, or loaded at start)
    "failed",  # checked and found wanting; the previous model kept serving
    "rolled_back",  # was serving, replaced by the previous model
    "interrupted",  # the agent stopped half-way; see the reason for what the next start did
    "removed",
]


class TensorInfo(Model):
    name: str
    shape: list[int | str | None]
    dtype: str


class ModelManifest(Model):
    """``models/<version>/manifest.json``: what was stored and checked, written before the commit rename."""

    version: str
    file: str = Field(description="the model file beside the manifest, e.g. model.onnx")
    sha256: str
    size: int
    format: ModelFormat
    backend: str
    layout: str
    input_shape: list[int]
    input_dtype: str
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    names: dict[int, str] = {}
    created: float
    source: str = Field(description="where it came from: an upload, a registry, a file added on the device")


class ModelVersion(Model):
    version: str
    manifest: ModelManifest
    current: bool = Field(description="models/current points here: the model the agent starts with")
    serving: bool = Field(description="the pipeline runs it right now")
    state: Literal["serving", "probation", "standby", "inactive"]
    last_good: bool = Field(default=False, description="a rollback would go to this version")


class ModelHistoryEntry(Model):
    """One row of the store's history (uploads, activations, rollbacks, removals), newest first."""

    id: int
    ts: float
    action: HistoryAction
    version: str | None = None
    previous: str | None = Field(default=None, description="what served before (None: the configured model)")
    outcome: HistoryOutcome
    reason: str | None = None
    job_id: str | None = None
    details: dict[str, Any] = {}
    updated: float | None = None


class ProbationStatus(Model):
    version: str
    previous: str | None
    started: float
    ends: float
    frames: int = 0


class ModelList(Model):
    """``GET /v1/models`` and ``fieldtui-agent models list --json``."""

    serving: ModelInfo | None = Field(default=None, description="what the pipeline runs now")
    current: str | None = None
    last_good: str | None = Field(
        default=None, description="where a rollback would go (None: the configured model, or nowhere)"
    )
    versions: list[ModelVersion] = Field(default_factory=list, description="newest first")
    history: list[ModelHistoryEntry] = Field(default_factory=list, description="newest first")
    probation: ProbationStatus | None = None
    keep: int
    max_upload_bytes: int

    def summary_lines(self, history: int = 8) -> list[str]:
        """The text both command lines print: versions, then the latest history with reasons."""
        import datetime as dt

        serving = self.serving.version or self.serving.path if self.serving else "nothing"
        lines = [
            f"serving   {serving}" + ("" if self.serving is None or self.serving.version else " (configured)")
        ]
        if self.probation is not None:
            p = self.probation
            left = max(0.0, p.ends - dt.datetime.now().timestamp())
            lines.append(f"probation {p.version}: {p.frames} frames so far, {left:.0f} s left")
        rows = [("VERSION", "STATE", "CURRENT", "SIZE", "SHA256", "LAYOUT", "CREATED", "SOURCE")]
        for v in self.versions:
            m = v.manifest
            state = v.state + (" (rollback target)" if v.last_good else "")
            created = dt.datetime.fromtimestamp(m.created).strftime("%Y-%m-%d %H:%M")
            size = f"{m.size / 1e6:.1f} MB"
            rows.append(
                (v.version, state, "*" if v.current else "", size, m.sha256[:12], m.layout, created, m.source)
            )
        if len(rows) > 1:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        else:
            lines.append("no versions stored")
        for h in self.history[:history]:
            when = dt.datetime.fromtimestamp(h.ts).strftime("%Y-%m-%d %H:%M:%S")
            what = f"{h.action} {h.version or '(configured model)'}"
            lines.append(f"{when}  {what}: {h.outcome}" + (f" - {h.reason}" if h.reason else ""))
        return lines


class ModelEvent(ModelInfo):
    """SSE ``model``: the model now serving (a :class:`ModelInfo`, so a reader that only knows that
    still gets it), with why it changed."""

    change: Literal["activated", "rolled_back", "auto_rolled_back"] | None = None
    reason: str | None = None
    previous: str | None = None


class RegistryOffer(Model):
    """``GET {registry}/latest?device_id=ID``: the version a device should run (a static file will do)."""

    version: str
    download_url: str = Field(description="absolute, or relative to the registry URL")
    sha256: str
    size: int | None = None


class PushResult(Model):
    """What ``fieldtui push --json`` prints."""

    version: ModelVersion
    uploaded: bool = Field(description="False when the device already had these bytes")
    activation: Job | None = None


# --- Trio forwarding ------------------------------------------------------------------------------

ForwardMode = Literal["check-once", "frame"]
TRIO_BASE_URL = "https://trio.machinefi.com/api"


class ForwardingRules(Model):
    """Which frames go to Trio. A frame qualifies when a detection of ``classes`` (empty: any class)
    reaches ``min_confidence`` and that class is not cooling down; then the global token bucket
    (``rate_per_minute``, bursts of ``burst``) must have a token."""

    classes: list[str] = Field(default_factory=list, description="class names; empty = every class")
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    cooldown_s: float = Field(default=30.0, ge=0.0, description="per class, after a forward")
    rate_per_minute: float = Field(default=6.0, gt=0.0, description="global rate limit (token bucket)")
    burst: int = Field(default=2, ge=1, le=100)
    redact_classes: list[str] = Field(
        default_factory=list, description="blur these classes' boxes before a frame leaves the device"
    )


class ForwardingSettings(Model):
    """What ``PUT /v1/forwarding`` sets (every field optional there: the ones given are changed).

    ``check-once``: Trio pulls ``stream_url`` itself. ``frame``: a JPEG and the condition are posted as
    multipart to ``frame_url`` (absolute, or a path under ``base_url``), for cameras Trio cannot reach.
    ``{classes}`` in ``condition`` becomes the classes that triggered the forward."""

    enabled: bool = False
    mode: ForwardMode = "check-once"
    base_url: str = TRIO_BASE_URL
    frame_url: str = "/check-frame"
    stream_url: str | None = None
    condition: str = "Is something unusual or unsafe happening near the detected {classes}?"
    timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    queue_size: int = Field(default=8, ge=1, le=1000)
    rules: ForwardingRules = Field(default_factory=ForwardingRules)


class ForwardingUpdate(Model):
    """The body of ``PUT /v1/forwarding``: any of the settings, and the Trio API key (stored in the
    agent home, mode 0600, never returned). ``api_key: ""`` deletes the stored key."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    mode: ForwardMode | None = None
    base_url: str | None = None
    frame_url: str | None = None
    stream_url: str | None = None
    condition: str | None = None
    timeout_s: float | None = Field(default=None, gt=0.0, le=120.0)
    queue_size: int | None = Field(default=None, ge=1, le=1000)
    rules: ForwardingRules | None = None
    api_key: str | None = Field(default=None, description="write-only")


class TrioError(Model):
    """Why a forward failed: Trio's own ``{"error": {code, message, remediation}}`` when it sent one,
    else ours (``timeout``, ``unreachable``, ``no_key``, ...)."""

    code: str
    message: str
    remediation: str


class ForwardResult(Model):
    """One forward (or ``POST /v1/forwarding/test``): what was sent and what came back."""

    ok: bool
    outcome: str = Field(description="ok, triggered, unauthorized, bad_request, rate_limited, timeout, ...")
    mode: ForwardMode
    url: str | None = None
    http_status: int | None = None
    latency_ms: float | None = Field(default=None, description="round trip measured on the device")
    trio_latency_ms: float | None = Field(default=None, description="what Trio reported")
    payload_bytes: int = 0
    triggered: bool | None = None
    explanation: str | None = None
    retry_after_s: float | None = None
    error: TrioError | None = None
    ts: float = 0.0


class ForwardingStats(Model):
    queue_depth: int = 0
    queue_capacity: int = 0
    forwards: dict[str, int] = Field(default_factory=dict, description="by outcome")
    dropped: dict[str, int] = Field(
        default_factory=dict, description="by reason: queue_full, rate_limited, cooldown, backoff"
    )
    backoff_remaining_s: float = 0.0
    last: ForwardResult | None = None


class ForwardingState(ForwardingSettings):
    """``GET /v1/forwarding``: the settings, the key shown masked, and the counters."""

    api_key: str = Field(description="masked: 'not set', 'sk-…abcd (key file)', 'set (from $ENV)'")
    stats: ForwardingStats = Field(default_factory=ForwardingStats)


class ForwardTestRequest(Model):
    condition: str | None = None
    timeout_s: float | None = Field(default=None, gt=0.0, le=60.0)


# --- benchmarks -----------------------------------------------------------------------------------

BenchMode = Literal["model", "pipeline"]


class BenchmarkRequest(Model):
    """``POST /v1/benchmarks``: every (backend, precision, threads, batch) combination is measured."""

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


class BenchmarkConfig(Model):
    mode: BenchMode = "model"
    backend: str
    precision: str = "fp32"
    threads: int | None = None
    batch: int = 1


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
    """This result against the previous run of the same configuration and model."""

    previous_id: int
    previous_created: float
    p50_change_pct: float | None = Field(description="negative = faster")
    fps_change_pct: float | None = Field(description="positive = more frames per second")
    verdict: Literal["better", "worse", "same"]


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
    agreement_f1: float | None = Field(
        default=None, description="F1 at IoU 0.5 against the FP32 model's detections (1.0 for fp32)"
    )
    agreement_frames: int = 0
    comparison: Comparison | None = None


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


def benchmark_table(run: BenchmarkRun) -> list[str]:
    """One rendering of a benchmark run for both command lines: a row per configuration, the per-frame
    latency and FPS side by side, and the change against the previous run of the same configuration."""
    lines = [
        f"model {run.model} ({run.model_sha256[:12]}) on device {run.device_id[:12]}, run {run.id[:12]}",
        f"{'mode':<8} {'backend':<12} {'prec':<5} {'thr':>3} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'ms/frame':>9} {'fps':>8} {'cpu%':>6} {'rss MB':>7} {'F1':>5}  vs previous",
    ]
    for r in run.results:
        c = r.config
        head = f"{c.mode:<8} {c.backend:<12} {c.precision:<5} {c.threads or '-':>3} {c.batch:>5}"
        if r.status != "ok":
            lines.append(f"{head}  {r.status}: {r.reason}")
            continue
        lat, sys_ = r.latency, r.system
        cmp = r.comparison
        versus = (
            "first run"
            if cmp is None
            else f"{cmp.verdict} (p50 {_fmt(cmp.p50_change_pct, '+.1f')}%, fps {_fmt(cmp.fps_change_pct, '+.1f')}%)"
        )
        lines.append(
            f"{head} {_fmt(lat.p50_ms if lat else None, '.2f'):>8} "
            f"{_fmt(lat.p99_ms if lat else None, '.2f'):>8} {_fmt(r.per_frame_ms, '.2f'):>9} "
            f"{_fmt(r.fps):>8} {_fmt(sys_.cpu_percent if sys_ else None, '.0f'):>6} "
            f"{_fmt(sys_.rss_mb if sys_ else None, '.0f'):>7} {_fmt(r.agreement_f1, '.2f'):>5}  {versus}"
        )
    system = next((r.system for r in run.results if r.system is not None), None)
    if system is not None:
        temp = "-" if system.temperature_c is None else f"{system.temperature_c:.0f} C"
        throttled = {True: "yes", False: "no", None: "unknown"}[system.throttled]
        source = f" ({system.throttle_source}: {system.throttle_detail})" if system.throttle_source else ""
        lines.append(f"temperature {temp}, throttled {throttled}{source}")
    return lines
