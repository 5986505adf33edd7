"""The agent as a service: config, pipeline, jobs, events and logs wired together, no HTTP.

Routes (agent/server/api/), the CLI and tests all drive this one class. Blocking methods (pipeline control,
state.db) are plain functions; FastAPI runs them in its thread pool. The only asyncio part is
:meth:`AgentService.tick_forever`, the ~2 Hz loop that publishes SSE ``sample`` and ``health`` events.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.core.config import AgentConfig
from agent.core.diskspace import DiskWatch
from agent.core.errors import AgentError, Conflict, SourceError
from agent.core.events import EventBus
from agent.core.home import AgentHome
from agent.core.jobs import JobContext, JobRunner
from agent.core.logbuf import LEVELS, LogBuffer
from agent.core.state import StateDB
from agent.frames.cameraset import camera_samples, other_camera_findings
from agent.frames.stats import WINDOW_S
from agent.server.auth import AuthPolicy, FailureThrottle, load_or_create_token
from agent.server.device import backends as find_backends
from agent.server.device import device_info
from agent.server.tls import TlsMaterial, ensure_tls
from agent.server.verdict import START_GRACE_S, health_verdict

if TYPE_CHECKING:
    from agent.store.activation import ModelManager
from fieldtui.protocol import (
    BackendInfo,
    DeviceInfo,
    HealthReport,
    Job,
    LogPage,
    ModelInfo,
    PipelineStatus,
    __version__,
)

log = logging.getLogger("fieldtui.agent.service")

SAMPLE_INTERVAL_S = 0.4  # SSE samples at 2.5 Hz: "about 2 Hz" with room for a busy CPU
CONTROL_WAIT_S = 15.0  # how long start/stop wait for a running pipeline job before answering 409
BACKENDS_TTL_S = 60.0


class AgentService:
    """One agent: see the module docstring. Build with :meth:`create`, end with :meth:`close`."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        pipeline: Any,
        db: StateDB,
        token: str,
        tls: TlsMaterial | None,
        auth_policy: AuthPolicy | None = None,
        logs: LogBuffer | None = None,
        models: ModelManager | None = None,
    ) -> None:
        self.config = config
        self.home = config.agent_home
        self.device_id = self.home.device_id()
        self.pipeline = pipeline
        self.metrics = pipeline.metrics
        self.db = db
        self.token = token
        self.tls = tls
        self.api_url: str | None = None  # set by the server once the socket is bound
        self.started = time.monotonic()
        self.bus = EventBus()
        self.jobs = JobRunner(db, on_change=lambda job: self.bus.publish("job", job))
        self.throttle = FailureThrottle(auth_policy)
        self.logs = logs if logs is not None else LogBuffer(secrets=lambda: (self.token,))
        self.logs.on_line = lambda line: self.bus.publish("log", line)
        self.model_listeners: list[Callable[[ModelInfo], None]] = []
        self.health_listeners: list[Callable[[HealthReport], None]] = []  # the mDNS TXT ``health``
        self._control = threading.Lock()  # one pipeline start/stop/restart/source change at a time
        self._last_health: tuple[str, tuple[str, ...]] | None = None
        self._backends: tuple[float, list[BackendInfo]] | None = None
        self._closed = False
        self.disk = DiskWatch(self.home.root, db.read_only)  # a full disk: said in health and status
        self.metrics.registry.register(_ControlPlaneCollector(self))
        # the model store (agent/store/activation.py): uploads, activation jobs, probation, pull mode
        self.models = models
        if models is not None:
            models.attach(self)
        # Trio forwarding (agent/forwarding/forwarder.py): a listener on the pipeline and its own worker thread
        from agent.forwarding.forwarder import attach_forwarding

        self.forwarding = attach_forwarding(self)
        # on-device benchmarks (agent/bench/jobs.py): read-only jobs, history in state.db
        from agent.bench.jobs import Benchmarks

        self.benchmarks = Benchmarks(self)
        # engine rebuilds (agent/engines/jobs.py): the engine store, stale flags, the rebuild job
        from agent.engines.jobs import Engines

        self.engines = Engines(self)
        # latency, FPS and confidence a minute at a time (agent/frames/series.py), for the visit report
        from agent.frames.series import attach_series

        self.series = attach_series(self)

    @classmethod
    def create(
        cls, config: AgentConfig, *, auth_policy: AuthPolicy | None = None, logs: LogBuffer | None = None
    ) -> AgentService:
        """Make the home, token, TLS material and state.db; load the model; build the pipeline
        (not started: see :meth:`start`). Raises AgentError with what to do when something is wrong.

        ``logs``: a ring buffer already collecting (``serve`` installs one first, so the lines of
        the start-up itself reach /v1/logs)."""
        from agent.frames.metrics import AgentMetrics
        from agent.frames.pipeline import Pipeline
        from agent.store.activation import ModelManager
        from agent.store.reconcile import reconcile

        home = AgentHome(config.home).ensure()
        token = load_or_create_token(home)
        tls = ensure_tls(home) if config.tls else None
        db = models = detector = None
        try:
            db = StateDB(home.state_db)
            # the store's current version (reconciled after a crash), else the configured/demo model
            models = ModelManager.open(config, db)
            detector = reconcile(models)  # what the agent starts with, after a crash too
            if config.cameras:  # [[cameras]]: one detector shared by every camera (agent/frames/multicam.py)
                from agent.frames.cameraset import CameraSet

                pipeline = CameraSet(detector, config.cameras, metrics=AgentMetrics(), threads=config.threads)
            else:
                pipeline = Pipeline(detector, config.source, metrics=AgentMetrics(), threads=config.threads)
            return cls(
                config,
                pipeline=pipeline,
                db=db,
                token=token,
                tls=tls,
                auth_policy=auth_policy,
                logs=logs,
                models=models,
            )
        except BaseException:
            if detector is not None:
                detector.close()
            if models is not None:
                models.close()
            if db is not None:
                db.close()
            raise

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pipeline. A source that is not there yet is retried in the background (the
        agent must come up so a technician can see why); a URI that can never work is logged and
        leaves the pipeline stopped, with the reason in /v1/health."""
        try:
            with self._control:
                self.pipeline.start(retry=True)
        except SourceError as err:
            log.error("pipeline not started: %s; set another source with PUT /v1/pipeline/source", err)
        if self.models is not None and self.models.settings.registry:  # pull mode
            from agent.store.pull import RegistryPoller

            self.models.poller = RegistryPoller(self.models, self.models.settings.registry, self.device_id)
            self.models.poller.start()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.bus.attach(loop)

    async def tick_forever(self) -> None:
        """Publish a ``sample`` (when someone listens) and ``health`` (when it changed), ~2 Hz.

        The schedule is absolute (next = start + k * interval), so the rate does not drift when a
        tick runs late; a tick that fell behind by more than one interval is skipped, not bunched.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += SAMPLE_INTERVAL_S
            try:
                if self.bus.subscriber_count:
                    sample = await asyncio.to_thread(self.pipeline.sample)
                    if sample.camera_name is None:  # the one-camera pipeline does not know its name
                        sample = sample.model_copy(update={"camera_name": self.config.camera})
                    self.bus.publish("sample", sample)
                    for each in await asyncio.to_thread(camera_samples, self.pipeline):
                        self.bus.publish("camera", each)  # every camera's, on a multi-camera agent
                self._publish_health_if_changed(await asyncio.to_thread(self.health))
            except Exception:  # noqa: BLE001 - telemetry must outlive one bad tick
                log.exception("telemetry tick failed")
            delay = next_at - loop.time()
            if delay < 0:
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def _publish_health_if_changed(self, report: HealthReport) -> None:
        key = (report.status, tuple(report.reasons))
        if key != self._last_health:
            if self._last_health is not None and report.status != self._last_health[0]:
                log.log(
                    logging.INFO if report.status == "ok" else logging.WARNING,
                    "health %s -> %s%s",
                    self._last_health[0],
                    report.status,
                    f": {'; '.join(report.reasons)}" if report.reasons else "",
                )
            changed = self._last_health is None or report.status != self._last_health[0]
            self._last_health = key
            self.bus.publish("health", report)
            for listener in list(self.health_listeners) if changed else []:
                try:
                    listener(report)
                except Exception:  # noqa: BLE001 - a listener must not stop the telemetry tick
                    log.exception("health listener %r failed", listener)

    def close(self, timeout: float = 10.0) -> None:
        """Stop jobs and the pipeline (joined), then close state.db. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.bus.close()
        self.series.close()
        self.forwarding.close()
        self.jobs.shutdown(timeout)
        if self.models is not None:
            self.models.close()  # before the pipeline stops: ends probation, closes the standby model
        with self._control:
            self.pipeline.stop()
        detector = getattr(self.pipeline, "detector", None)
        if detector is not None:
            detector.close()
        self.db.close()

    # --- reading --------------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """The one verdict (agent/server/verdict.py): pipeline, source, camera, confidence against last
        good's baseline, dropped frames, and the probation under way."""
        st: PipelineStatus = self.pipeline.status()
        models = self.models
        disk = self.disk.reason()
        verdict = health_verdict(
            st,
            window_s=WINDOW_S,
            baseline=models.health_baseline() if models is not None else None,
            probation=models.live().probation if models is not None else None,
            extra=[
                *([("degraded", disk)] if disk is not None else []),
                *other_camera_findings(self.pipeline),
            ],
        )
        return HealthReport(
            status=verdict.status,
            reasons=verdict.reasons,
            notes=verdict.notes,
            version=__version__,
            uptime_s=round(time.monotonic() - self.started, 1),
            id=self.device_id,  # as mDNS advertises: lets a console that probed an address merge it
            name=self.config.name,
        )

    def status(self) -> PipelineStatus:
        st: PipelineStatus = self.pipeline.status()
        disk = self.disk.reason()
        return st if disk is None else st.model_copy(update={"read_only": disk})

    def device(self) -> DeviceInfo:
        now = time.monotonic()
        if self._backends is None or now - self._backends[0] > BACKENDS_TTL_S:
            self._backends = (now, find_backends())
        return device_info(
            device_id=self.device_id,
            name=self.config.name,
            api_url=self.api_url,
            tls_fingerprint=self.tls.fingerprint if self.tls else None,
            backend_infos=self._backends[1],
        )

    def model_label(self) -> str:
        """The active model as the mDNS TXT ``model`` shows it: its version, else the file stem."""
        info: ModelInfo | None = getattr(self.pipeline.detector, "info", None)
        if info is None:
            return ""
        return info.version or Path(info.path).stem

    def read_logs(self, since: float | None, level: str | None, limit: int) -> LogPage:
        if level is not None and level.upper() not in LEVELS:
            raise AgentError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}", status=422)
        return self.logs.query(since=since, level=level, limit=limit)

    # --- pipeline control -----------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._control.acquire(timeout=CONTROL_WAIT_S):
            raise Conflict(
                "a pipeline job (restart or source change) is still running; "
                "wait for it (GET /v1/jobs) and try again"
            )
        try:
            yield
        finally:
            self._control.release()

    def start_pipeline(self) -> PipelineStatus:
        with self._locked():
            self.pipeline.start(retry=True)
        return self.pipeline.status()

    def stop_pipeline(self) -> PipelineStatus:
        with self._locked():
            self.pipeline.stop()
        return self.pipeline.status()

    def restart_pipeline(self) -> Job:
        return self.jobs.submit("pipeline.restart", self._restart_job, mutating=True)

    def _restart_job(self, ctx: JobContext) -> dict[str, Any]:
        with self._control:
            ctx.progress(0.1, "stopping the pipeline")
            self.pipeline.stop()
            ctx.progress(0.5, "starting the pipeline")
            self.pipeline.start(retry=True)
        ctx.progress(0.8, "waiting for the first frame")
        deadline = time.monotonic() + START_GRACE_S
        while self.pipeline.state == "starting" and time.monotonic() < deadline:
            ctx.sleep(0.05)  # cancel here only stops the waiting: the pipeline is already started
        return {"state": self.pipeline.state}

    def change_source(self, uri: str) -> Job:
        """Check the URI's form now (422 if it can never work), then switch in a mutating job; if the
        new source cannot be opened the job fails and the old source keeps running."""
        from agent.frames.sources import make_source, redact

        probe = make_source(uri)  # raises SourceError for a URI of the wrong form
        probe.close()
        shown = redact(uri)
        return self.jobs.submit(
            "pipeline.source",
            self._source_job,
            {"uri": uri},
            shown_params={"uri": shown},
            mutating=True,
        )

    def _source_job(self, ctx: JobContext) -> dict[str, Any]:
        from agent.frames.sources import redact

        uri = ctx.params["uri"]
        ctx.progress(0.1, f"opening {redact(uri)}")
        with self._control:
            self.pipeline.set_source(uri)
        status = self.pipeline.status()
        return {"source": status.source.uri if status.source else redact(uri), "state": status.state}

    def swap_detector(self, new: Any, event: ModelInfo | None = None) -> Any:
        """Put ``new`` into the running pipeline (no restart); announce it over SSE ``model`` (``event``
        when given: a ModelInfo with why it changed) and to the model listeners (the mDNS TXT update).
        Returns the old detector for the caller to close."""
        old = self.pipeline.swap_detector(new)
        info: ModelInfo | None = getattr(new, "info", None)
        if info is not None:
            self.bus.publish("model", event if event is not None else info)
            for listener in list(self.model_listeners):
                try:
                    listener(info)
                except Exception:  # noqa: BLE001 - a listener must not undo a swap that happened
                    log.exception("model listener %r failed", listener)
        return old


class _ControlPlaneCollector(Collector):
    """Control-plane state read at scrape time: jobs per state, auth failures, SSE subscribers."""

    def __init__(self, service: AgentService) -> None:
        self._service = service

    def describe(self) -> Iterable[Metric]:
        return []  # collected at scrape time only; nothing to clash with at registration

    def collect(self) -> Iterable[Metric]:
        svc = self._service
        jobs = GaugeMetricFamily("fieldtui_agent_jobs", "jobs in state.db by state", labels=["state"])
        try:
            counts = svc.jobs.counts()
        except AgentError:  # state.db closed: shutting down
            counts = {}
        for state in ("queued", "running", "succeeded", "failed", "cancelled"):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        yield CounterMetricFamily(
            "fieldtui_agent_auth_failures",
            "requests refused for a missing or wrong token",
            value=svc.throttle.total_failures,
        )
        yield CounterMetricFamily(
            "fieldtui_agent_auth_throttled",
            "requests answered 429 because their address failed too often",
            value=svc.throttle.total_refused,
        )
        yield GaugeMetricFamily(
            "fieldtui_agent_sse_subscribers", "open GET /v1/events streams", value=svc.bus.subscriber_count
        )
        yield CounterMetricFamily(
            "fieldtui_agent_sse_events_dropped",
            "events a slow SSE subscriber lost (its queue was full)",
            value=svc.bus.dropped,
        )
        health = GaugeMetricFamily(
            "fieldtui_agent_health", "1 for the agent's health verdict now (GET /v1/health)", labels=["state"]
        )
        try:
            status = svc.health().status
        except AgentError:  # state.db closed: shutting down
            status = None
        for state in ("ok", "degraded", "failing"):
            health.add_metric([state], float(state == status))
        yield health
        yield GaugeMetricFamily(
            "fieldtui_agent_uptime_seconds",
            "seconds since the agent started",
            value=time.monotonic() - svc.started,
        )
