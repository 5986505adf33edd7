"""Canned services for the console's screens: a fleet and agents that answer from fixed data.

Screens take their services by injection, so snapshot tests (fixed size, clock and data) and the TUI
bench swap the service, not a socket: :class:`FakeFleet` has the methods of ``fieldtui.fleet.Fleet``
that the screens call, :class:`FakeAgent` those of ``fieldtui.client.AgentClient`` (and ``events()``
returns a stream with the interface of ``fieldtui.sse.EventStream``). Named fakes, used only where a
live agent would make the picture unstable; behaviour tests run against a real agent.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from fieldtui.errors import AgentUnreachable, ConsoleError
from fieldtui.fleet import Added, Probe
from fieldtui.protocol import (
    CameraHealth,
    DamagedVersion,
    DeviceInfo,
    DeviceRecord,
    ForwardingRules,
    ForwardingState,
    ForwardingStats,
    ForwardingUpdate,
    ForwardResult,
    HealthReport,
    Job,
    LogLine,
    LogPage,
    ModelHistoryEntry,
    ModelInfo,
    ModelList,
    ModelManifest,
    ModelVersion,
    PipelineStatus,
    RollbackPlan,
    Sample,
    SourceStatus,
    StageTimes,
    ThreadPolicy,
    ThreadTrial,
    TrioError,
)
from fieldtui.protocol.palette import class_rgb

T0 = 1_790_000_000.0  # the fixed "now" of the snapshots (their clock never moves)
HOST_FINGERPRINT = "SHA256:3q2+7wX0m1Yk9bLr5TfVh8Jc4NdAe6GuPz2RsKoQiM0"
NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}

Feed = Callable[[], AsyncIterator[tuple[str, BaseModel]]]


def sample(
    i: int, ts: float, *, confidence: float | None = None, camera: CameraHealth | None = None
) -> Sample:
    """A deterministic, gently varying sample number ``i``."""
    wave = math.sin(i / 6.0)
    return Sample(
        ts=ts,
        fps=round(24 + 4 * wave, 2),
        latency_p50_ms=round(18 + 3 * wave, 2),
        latency_p95_ms=round(27 + 6 * math.sin(i / 4.0) ** 2, 2),
        stages_ms=StageTimes(capture=1.0, preprocess=2.0, infer=14.0, postprocess=1.0),
        confidence_avg=round(0.82 + 0.08 * wave, 4) if confidence is None else confidence,
        detections={"circle": 12 + i % 5, "square": 8, "triangle": 3 + i % 3, "cross": 0},
        drop_rate=round(0.02 + 0.02 * max(0.0, wave), 4),
        frames_total=100 * i,
        dropped_total=2 * i,
        camera=camera or CameraHealth(brightness=128.0, sharpness=410.0, sharpness_ratio=0.97),
    )


def samples(n: int = 90, end: float = T0, *, degrade_last: int = 0) -> list[Sample]:
    """``n`` samples ending at ``end``; the last ``degrade_last`` show a dirty lens and low confidence."""
    out = []
    for i in range(n):
        bad = i >= n - degrade_last
        camera = (
            CameraHealth(
                brightness=121.0,
                sharpness=120.0,
                sharpness_ratio=0.3,
                ok=False,
                reasons=["sharpness down 70%: lens dirty or out of focus?"],
            )
            if bad
            else None
        )
        out.append(sample(i, end - (n - 1 - i) * 0.4, confidence=0.41 if bad else None, camera=camera))
    return out


def picture_png(width: int = 640, height: int = 480) -> bytes:
    """A stand-in for the annotated frame: a gradient with class-coloured boxes (PNG: lossless, stable)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=(40 + y * 60 // height, 70 + y * 90 // height, 110))
    draw.ellipse([60, 80, 220, 240], fill=(60, 200, 220))
    draw.rectangle([56, 76, 224, 244], outline=class_rgb(0), width=6)
    draw.rectangle([380, 260, 560, 420], fill=(230, 120, 40))
    draw.rectangle([376, 256, 564, 424], outline=class_rgb(1), width=6)
    draw.polygon([(300, 60), (360, 180), (240, 180)], fill=(20, 20, 20))
    draw.rectangle([236, 56, 364, 184], outline=class_rgb(2), width=6)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def device_info(name: str = "gate-3") -> DeviceInfo:
    return DeviceInfo(
        id="3f2a9c1b7d5e4a60",
        name=name,
        version="0.1.0",
        hostname=name,
        platform="Linux-6.6-aarch64",
        machine="aarch64",
        python="3.11.9",
        accelerators=["Hailo-8L"],
    )


def pipeline_status(last: Sample | None = None) -> PipelineStatus:
    return PipelineStatus(
        state="running",
        source=SourceStatus(uri="rtsp://***@10.0.4.21/stream1", kind="rtsp", up=True, width=640, height=480),
        model=ModelInfo(
            version="v7",
            path="/var/lib/fieldtui-agent/models/v7/model.onnx",
            sha256="ab" * 32,
            backend="onnxruntime",
            input_shape=[1, 3, 640, 640],
            input_dtype="float32",
            layout="yolov8",
            names=NAMES,
        ),
        sample=last,
        started_at=T0 - 3600,
        threads=ThreadPolicy(
            mode="measured",
            threads=2,
            spinning=False,
            fps=24.8,
            reason="2 threads, spinning off: 24.8 fps, the best of 4 measured in 2.1 s (model loaded)",
            trials=[
                ThreadTrial(threads=t, spinning=s, fps=f, cpu_ms_per_frame=c, frames=20)
                for t, s, f, c in (
                    (1, False, 17.1, 61.0),
                    (2, False, 24.8, 70.2),
                    (1, True, 17.3, 66.0),
                    (2, True, 24.1, 83.5),
                )
            ],
        ),
    )


def log_lines(n: int = 30, end: float = T0) -> list[LogLine]:
    levels = ["INFO", "INFO", "DEBUG", "WARNING", "INFO", "ERROR"]
    out = []
    for i in range(n):
        level = levels[i % len(levels)]
        message = {
            "INFO": f"sample window: {24 + i % 4} fps, p95 {27 + i % 7} ms",
            "DEBUG": f"preprocess took {2 + i % 3}.{i % 10} ms",
            "WARNING": "camera: sharpness down 70%: lens dirty or out of focus?",
            "ERROR": "source lost (rtsp://***@10.0.4.21/stream1): connection reset; reconnecting in 2 s",
        }[level]
        out.append(
            LogLine(ts=end - (n - i) * 1.5, level=level, logger="fieldtui.agent.pipeline", message=message)
        )
    return out


def model_list() -> ModelList:
    """A store with three versions: v7 serving, v6 the rollback target, v8 uploaded but never activated."""

    def version(name: str, days: float, state: str, size: int, **kw: Any) -> ModelVersion:
        manifest = ModelManifest(
            version=name,
            file="model.onnx",
            sha256=(name.encode().hex() * 32)[:64],
            size=size,
            format="onnx",
            backend="onnxruntime",
            layout="yolov8",
            input_shape=[1, 3, 640, 640],
            input_dtype="float32",
            names=NAMES,
            created=T0 - days * 86400,
            source="upload from 10.0.4.2",
        )
        flags = {"current": False, "serving": False} | kw
        return ModelVersion(version=name, manifest=manifest, state=state, **flags)

    def entry(
        i: int, hours: float, action: str, version: str, previous: str | None, outcome: str, reason=None
    ):
        return ModelHistoryEntry(
            id=i,
            ts=T0 - hours * 3600,
            action=action,
            version=version,
            previous=previous,
            outcome=outcome,
            reason=reason,
        )

    return ModelList(
        serving=pipeline_status().model,
        current="v7",
        last_good="v6",
        versions=[
            version("v8", 0.1, "inactive", 12_480_211),
            version("v7", 2, "serving", 12_411_904, current=True, serving=True, verdict="passed"),
            version("v6", 9, "inactive", 12_398_017, last_good=True, verdict="passed"),
        ],
        damaged=[
            DamagedVersion(version="v5", reason="the manifest of v5 is unreadable (EOF); remove the version")
        ],
        rollback=RollbackPlan(version="v6", label="v6", why="the newest version that passed probation"),
        history=[
            entry(6, 2, "upload", "v8", None, "stored"),
            entry(5, 20, "activate", "v7", "v6", "good"),
            entry(
                4,
                26,
                "auto_rollback",
                "v6",
                "v7",
                "good",
                "auto-rollback from v7 to v6: confidence 0.31 vs 0.92 for v6 over 60 s",
            ),
            entry(3, 27, "activate", "v7", "v6", "rolled_back", "confidence 0.31 under 0.60 for 60 s"),
            entry(2, 48, "upload", "v7", None, "stored"),
            entry(1, 216, "activate", "v6", None, "good"),
        ],
        keep=5,
        max_upload_bytes=200_000_000,
    )


def forwarding_state() -> ForwardingState:
    """Frame mode to Trio, a key from a key file (masked, as the agent shows it), some traffic."""
    return ForwardingState(
        enabled=True,
        mode="frame",
        condition="Is a person standing on the loading dock near the {classes}?",
        rules=ForwardingRules(classes=["square", "cross"], min_confidence=0.6, redact_classes=["circle"]),
        api_key="sk-…3f9a (key file)",
        stats=ForwardingStats(
            queue_depth=0,
            queue_capacity=8,
            forwards={"ok": 41, "triggered": 3, "unauthorized": 1},
            dropped={"cooldown": 212, "rate_limited": 9},
        ),
    )


def trio_unauthorized() -> ForwardResult:
    return ForwardResult(
        ok=False,
        outcome="unauthorized",
        mode="frame",
        url="https://trio.machinefi.com/api/check-frame",
        http_status=401,
        latency_ms=187.0,
        payload_bytes=48_213,
        error=TrioError(
            code="UNAUTHORIZED",
            message="Trio answered 401: invalid API key",
            remediation='check the Trio API key: set it with PUT /v1/forwarding {"api_key": ...} or $FIELDTUI_AGENT_TRIO_API_KEY',
        ),
        ts=T0,
    )


class FakeStream:
    """The interface of ``fieldtui.sse.EventStream``: ``async with``, ``async for``, ``last_event_id``."""

    def __init__(
        self, feed: Feed, on_state: Callable[[str, str | None], None] | None = None, **_: Any
    ) -> None:
        self._feed = feed
        self._on_state = on_state
        self.last_event_id: str | None = None
        self.reconnects = 0
        self._iterator: AsyncIterator[tuple[str, BaseModel]] | None = None

    async def __aenter__(self) -> FakeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._iterator is not None and hasattr(self._iterator, "aclose"):
            await self._iterator.aclose()

    def __aiter__(self) -> AsyncIterator[tuple[str, BaseModel]]:
        if self._on_state is not None:
            self._on_state("connected", None)
        self._iterator = self._feed()
        return self._iterator


class FakeAgent:
    """Answers like an agent from fixed data; ``down=True`` answers like one that is not running."""

    def __init__(
        self,
        info: DeviceInfo | None = None,
        status: PipelineStatus | None = None,
        events: list[tuple[str, BaseModel]] | None = None,
        *,
        feed: Feed | None = None,
        logs: list[LogLine] | None = None,
        picture: bytes | None = None,
        health: HealthReport | None = None,
        down: bool = False,
        url: str = "http://10.0.4.17:8470",
    ) -> None:
        self.info = info or device_info()
        self.status_doc = status or pipeline_status()
        self.health_doc = health or HealthReport(status="ok", version="0.1.0", uptime_s=3600.0)
        self.event_list = events or []
        self.feed = feed or self._canned
        self.log_lines = logs or []
        self.picture = picture
        self.down = down
        self.url = url
        self.jobs: list[Job] = []
        self.models_doc = model_list()
        self.forwarding_doc = forwarding_state()
        self.trio_answer = trio_unauthorized()
        self.benchmarks_doc = None  # set from tests.tui_fakes_jobs where a screen shows benchmarks
        self.engines_doc = None
        self.rebuild_doc = None  # the result a rebuild job ends with
        self.job_ends: dict[str, Job] = {}  # what job(id) answers once the job has started

    def _check(self) -> None:
        if self.down:
            raise AgentUnreachable(f"connection refused at {self.url}: is the agent running?", url=self.url)

    async def _canned(self) -> AsyncIterator[tuple[str, BaseModel]]:
        for item in self.event_list:
            yield item
        await asyncio.Event().wait()  # then a quiet, open stream

    async def device(self) -> DeviceInfo:
        self._check()
        return self.info

    async def status(self) -> PipelineStatus:
        self._check()
        return self.status_doc

    async def health(self) -> HealthReport:
        self._check()
        return self.health_doc

    async def logs(
        self, limit: int | None = None, level: str | None = None, since: float | None = None
    ) -> LogPage:
        self._check()
        lines = [x for x in self.log_lines if since is None or x.ts > since]
        return LogPage(lines=lines[-(limit or 200) :])

    def events(self, **options: Any) -> FakeStream:
        self._check()
        return FakeStream(self.feed, **options)

    async def snapshot_jpeg(self, width: int | None = None) -> bytes:
        self._check()
        if self.picture is None:
            raise AgentUnreachable("no frame yet", status=503)
        return self.picture

    async def pipeline_restart(self) -> Job:
        self._check()
        job = Job(id=f"job-{len(self.jobs) + 1}", kind="pipeline.restart", state="succeeded", created=T0)
        self.jobs.append(job)
        return job

    async def set_source(self, uri: str) -> Job:
        self._check()
        job = Job(id=f"job-{len(self.jobs) + 1}", kind="pipeline.source", state="succeeded", created=T0)
        self.jobs.append(job)
        return job

    async def wait_job(self, job_id: str, timeout: float = 60.0, interval: float = 0.2) -> Job:
        return next(j for j in self.jobs if j.id == job_id)

    async def models(self) -> ModelList:
        self._check()
        return self.models_doc

    async def forwarding(self) -> ForwardingState:
        self._check()
        return self.forwarding_doc

    async def forwarding_update(self, update: ForwardingUpdate) -> ForwardingState:
        self._check()
        changes = update.model_dump(exclude_none=True, exclude={"api_key"})
        self.forwarding_doc = self.forwarding_doc.model_copy(update=changes)
        return self.forwarding_doc

    async def trio_test(self, condition: str | None = None, timeout_s: float | None = None) -> ForwardResult:
        self._check()
        return self.trio_answer

    async def benchmarks(self, limit: int = 20) -> Any:
        self._check()
        return self.benchmarks_doc

    async def engines(self) -> Any:
        self._check()
        return self.engines_doc

    async def rebuild_engine(self, request: Any) -> Job:
        """A rebuild seen running at its calibration stage; read again, it has ended with ``rebuild_doc``."""
        self._check()
        job = Job(
            id=f"job-{len(self.jobs) + 1}",
            kind="engine_rebuild",
            state="running",
            progress=0.35,
            stage=f"calibrating on {request.calibration_frames} frames",
            created=T0,
            params=request.model_dump(),
        )
        self.jobs.append(job)
        result = self.rebuild_doc.model_dump() if self.rebuild_doc is not None else None
        self.job_ends[job.id] = job.model_copy(
            update={"state": "succeeded", "progress": 1.0, "stage": "done", "result": result, "finished": T0}
        )
        return job

    async def job(self, job_id: str) -> Job:
        self._check()
        return self.job_ends.get(job_id) or next(j for j in self.jobs if j.id == job_id)

    async def cancel_job(self, job_id: str) -> Job:
        self._check()
        return await self.job(job_id)

    async def aclose(self) -> None:
        pass


class FakeFleet:
    """The fleet's methods over fixed records, each with its :class:`FakeAgent` (None: never answers)."""

    def __init__(
        self, devices: list[tuple[DeviceRecord, FakeAgent | None]], hints: list[str] | None = None
    ) -> None:
        self.records = [r for r, _ in devices]
        self.agents = {r.name: a for r, a in devices}
        self._hints = hints or []
        self.added: list[tuple[str, int | None, str, str | None]] = []
        self.closed = False

    async def start(self, on_change: Callable[[], None] | None = None) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    def devices(self) -> list[DeviceRecord]:
        return list(self.records)

    def hints(self) -> list[str]:
        return self._hints if not self.records else []

    def client(self, device: DeviceRecord) -> FakeAgent:
        return self.agents.get(device.name) or FakeAgent(down=True)

    async def probe(self, device: DeviceRecord) -> Probe:
        agent = self.client(device)
        return Probe(health=await agent.health(), status=await agent.status())

    async def add(
        self, host: str, port: int | None, token: str, fingerprint: str | None = None, name: str | None = None
    ) -> Added:
        if token != "good-token":
            raise ConsoleError(f"http://{host}:{port} refused this token (wrong token); nothing was saved")
        self.added.append((host, port, token, fingerprint))
        record = DeviceRecord(name=name or host, host=host, port=port or 8470, origin=["manual"])
        self.records.append(record)
        return Added(device=record)

    async def pair(
        self, host: str, user: str | None = None, port: int | None = None, *, accept_new: bool = False
    ) -> Added:
        """An SSH host never seen before: refused with its fingerprint until accepted."""
        from fieldtui.ssh import HostKeyUnknown

        if not accept_new:
            raise HostKeyUnknown(
                f"{host} is not a known SSH host; its key fingerprint is {HOST_FINGERPRINT}",
                host=host,
                fingerprint=HOST_FINGERPRINT,
            )
        record = DeviceRecord(name=host, host=host, port=8470, origin=["ssh"])
        self.records.append(record)
        return Added(device=record)
