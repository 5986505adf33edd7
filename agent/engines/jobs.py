"""Engine rebuilds as agent jobs, and the engine list: ``POST /v1/engines/rebuild``, ``GET /v1/engines``.

A rebuild runs beside the serving pipeline (the device keeps detecting with its current model): frames
are captured from the live source (or read from ``calibration_dir``; a source that gives none fails the
job rather than calibrate a camera's engine on anything else), the engine is built, measured and
stored by agent/engines/build.py. Everything a request gets wrong is refused (422) before a job exists.
With ``activate`` the engine is added to the model store as a new version
(``<source version>-<backend>-<precision>-<sha256 prefix>``) and activated by the store's own
health-checked activation job, which runs once this one ends; the result names that job.

One rebuild at a time: two would calibrate and time each other on the same CPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import AgentError, Conflict
from agent.core.home import user_path
from agent.core.jobs import JobContext
from agent.engines.build import BuildOptions, BuildSource, CannotBuild, check_buildable, rebuild
from agent.engines.store import EngineStore, identities
from agent.engines.worker import ChildUnavailable, rebuild_in_child
from fieldtui.protocol import EngineList, EngineRebuildRequest, EngineRebuildResult, Job

log = logging.getLogger("fieldtui.agent.engines")

JOB_KIND = "engine_rebuild"
CAPTURE_S_PER_FRAME = 0.2  # live capture gives up after this long per frame asked for (at least 5 s)


def engine_version(source: str | None, backend: str, precision: str, sha256: str) -> str:
    """The store version an activated engine is added as; at most 64 characters."""
    tail = f"-{backend}-{precision}-{sha256[:8]}"
    return (source or "model")[: 64 - len(tail)] + tail


def release_memory() -> None:
    """Give what a rebuild freed in this process (its frames; the whole build when it ran here, not in
    a child) back to the system: the C heap keeps freed memory otherwise. A 300-frame INT8 rebuild in
    this process left an agent serving at 190 MB at 800 MB; 270 MB with this; 187 MB with the build in a
    child process (bench/rebuild_memory.py)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to ask
        trim = None
    if trim is not None:
        trim(0)


def split_frames(frames: list[np.ndarray], calibrate: int, held: int) -> tuple[list, list]:
    """Calibration frames first, held-out frames after them; with too few, the held-out ones are the
    last ``held`` frames (overlapping calibration: the agreement then says less, and the log says so)."""
    if len(frames) >= calibrate + held:
        return frames[:calibrate], frames[calibrate : calibrate + held]
    return frames[:calibrate], frames[-held:] if held else []


def build_options(request: EngineRebuildRequest, frames: list[np.ndarray], notes: list[str]) -> BuildOptions:
    """The build's options for ``request`` from the frames gathered for it (calibration first, held-out
    after: :func:`split_frames`), for the agent's job and the offline ``engines rebuild`` alike."""
    calibrate = frames_wanted(request) - request.accuracy_frames
    cal, held = split_frames(frames, calibrate, request.accuracy_frames)
    if len(frames) < calibrate + request.accuracy_frames:
        notes = [*notes, "held-out frames overlap the calibration frames: too few images"]
    return BuildOptions(
        backend=request.backend,
        precision=request.precision,
        workspace_mb=request.workspace_mb,
        version_compatible=request.version_compatible,
        calibration=cal,
        held_out=held,
        notes=notes,
    )


def frames_wanted(request: EngineRebuildRequest) -> int:
    """Calibration frames (INT8 only) plus held-out frames."""
    return (request.calibration_frames if request.precision == "int8" else 0) + request.accuracy_frames


def resolve_source(
    models: Any,
    engines: EngineStore,
    version: str | None,
    *,
    serving: str | None,
    configured: Callable[[], BuildSource],
) -> BuildSource:
    """The FP32 ONNX model to build from: store ``version``; else the ``serving`` version, or when an
    engine serves, the model that engine was built from; else the ``configured`` model (the agent's
    ``--model`` or the demo model). ``models`` is the :class:`~agent.store.models.ModelStore` (None: none)."""
    from agent.inference.detector import file_sha256
    from agent.store.models import check_version

    if version is None:
        if serving is None:
            return configured()
        built = next((e for e in engines.list() if e.model_version == serving), None)
        if built is None:
            version = serving
        elif built.source_version:
            version = built.source_version
        else:  # an engine of the configured model serves
            source = configured()
            if source.sha256 != built.fingerprint.source_sha256:
                raise CannotBuild(
                    f"version: {serving} is engine {built.key}, built from a model no longer configured "
                    "here; give the version to build from"
                )
            return source
    check_version(version)
    if models is None or not models.has(version):
        raise CannotBuild(
            f"version: no model version {version!r} in this device's store; GET /v1/models lists "
            "them (omit version to build from the model serving now)"
        )
    manifest = models.manifest(version)
    if manifest.format != "onnx":
        raise CannotBuild(f"version: {version} is a .{manifest.format}; engines are built from an ONNX model")
    path = models.dir(version) / manifest.file
    return BuildSource(path, manifest.sha256 or file_sha256(path), version)


def configured_model(path: str | None) -> Callable[[], BuildSource]:
    """The agent's configured model (``--model``, else the demo model) as a build source, hashed when
    asked for."""

    def source() -> BuildSource:
        from agent.inference.detector import demo_model_path, file_sha256

        model = Path(path).expanduser() if path else demo_model_path()
        if not model.is_file():
            raise CannotBuild(f"the configured model {model} is missing; give the version to build from")
        return BuildSource(model, file_sha256(model), None)

    return source


class Engines:
    """The agent's engine service; ``service`` is the :class:`~agent.server.service.AgentService`."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.store = EngineStore(service.home.engines_dir)
        self.store.clean_staging()
        self._submitting = threading.Lock()
        self._job_id: str | None = None
        self.in_child = True  # rebuild in a child process (agent/engines/worker.py); False: in this one
        try:
            self.list()  # sets fieldtui_agent_engine_stale from the start
        except Exception:  # noqa: BLE001 - a bad engine folder must not stop the agent
            log.exception("listing engines at start failed")

    # --- reading ------------------------------------------------------------------------------

    def list(self) -> EngineList:
        """Every stored engine with its stale flag against what this device offers; updates the metric."""
        here = identities()
        engines = self.store.list(here)
        self.service.metrics.set_engines((e.key, e.fingerprint.runtime, e.stale) for e in engines)
        return EngineList(engines=engines, runtimes=here)

    # --- rebuilding ---------------------------------------------------------------------------

    def source(self, version: str | None) -> BuildSource:
        models = self.service.models
        if models is None:  # no store: the model the pipeline runs is all there is
            detector = self.service.pipeline.detector
            return resolve_source(
                None,
                self.store,
                version,
                serving=None,
                configured=lambda: BuildSource(Path(detector.path), detector.sha256, None),
            )
        return resolve_source(
            models.store,
            self.store,
            version,
            serving=models.serving,
            configured=configured_model(models.config_model),
        )

    def check(self, request: EngineRebuildRequest) -> BuildSource:
        """Everything a request can get wrong, as a 422 before any job exists."""
        check_buildable(request.backend, request.precision)
        if (
            request.calibration_dir is not None
            and not user_path(request.calibration_dir, CannotBuild).is_dir()
        ):
            raise CannotBuild(
                f"calibration_dir: {request.calibration_dir} is not a folder on the device; give a folder "
                "of JPEG/PNG frames from this camera, or omit it to calibrate on the live source"
            )
        if request.activate and self.service.models is None:
            raise CannotBuild("activate: this agent runs without a model store")
        return self.source(request.version)

    def submit(self, request: EngineRebuildRequest) -> Job:
        self.check(request)
        with self._submitting:
            if self._job_id is not None:
                current = self.service.jobs.get(self._job_id)
                if current.state in ("queued", "running"):
                    raise Conflict(
                        f"an engine rebuild is already running (job {current.id}); wait for it or cancel it"
                    )
            job = self.service.jobs.submit(
                JOB_KIND, self._job, request.model_dump(mode="json"), mutating=request.activate
            )
            self._job_id = job.id
        return job

    def _job(self, ctx: JobContext) -> EngineRebuildResult:
        try:
            return self.run(EngineRebuildRequest.model_validate(ctx.params), ctx)
        finally:
            release_memory()

    def frames(self, request: EngineRebuildRequest, ctx: JobContext | None) -> tuple[list, list[str]]:
        """(frames, a note on where they came from): from ``calibration_dir``, else the live source."""
        from agent.bench.frames import folder_frames, live_frames

        want = frames_wanted(request)
        if request.calibration_dir is not None:
            frames = folder_frames(request.calibration_dir, want)
            return frames, [f"{len(frames)} frames from {request.calibration_dir}"]
        frames = []
        pipeline = self.service.pipeline
        while len(frames) < want:
            if ctx is not None:
                ctx.check_cancelled()
                ctx.progress(0.0, f"capturing frames from the live source ({len(frames)}/{want})")
            got = live_frames(pipeline, min(8, want - len(frames)), timeout=max(5.0, 8 * CAPTURE_S_PER_FRAME))
            if not got:
                break
            frames += got
        if not frames:  # calibrating a camera's engine on anything else would mislead
            raise AgentError(
                "no frames from the live source to calibrate on (GET /v1/status says why); start "
                "the source, or give calibration_dir: a folder of images from this camera",
                status=409,
            )
        return frames, [f"{len(frames)} frames from the live source"]

    def run(self, request: EngineRebuildRequest, ctx: JobContext | None = None) -> EngineRebuildResult:
        source = self.check(request)
        options = build_options(request, *self.frames(request, ctx))
        hooks = {
            "check_cancelled": ctx.check_cancelled if ctx else lambda: None,
            "progress": ctx.progress if ctx else lambda f, s: None,
        }
        # in a child process: what calibration allocates leaves with it (agent/engines/worker.py)
        try:
            if not self.in_child:
                raise ChildUnavailable("in_child is off")
            result = rebuild_in_child(self.store, source, options, **hooks)
        except ChildUnavailable as err:
            log.warning(
                "engine build in this process (no child process: %s); its memory is trimmed after", err
            )
            result = rebuild(self.store, source, options, **hooks)
        self.list()  # the metric sees the new engine
        if request.activate:
            result = self.activate(result, source)
        return result

    def activate(self, result: EngineRebuildResult, source: BuildSource) -> EngineRebuildResult:
        """Add the engine to the model store as a new version and submit the health-checked activation
        (a mutating job: it starts when this one has ended)."""
        models = self.service.models
        version = store_as_version(models, self.store, result, source)
        try:
            job = models.submit_activate(version, reason=f"engine rebuild: {result.engine.key}")
        except AgentError as err:
            raise AgentError(f"{version} is stored but its activation did not start: {err}") from None
        log.info("engine %s stored as model %s; activation job %s", result.engine.key, version, job.id)
        engine = self.store.get(result.engine.key, identities())
        return result.model_copy(
            update={"engine": engine, "model_version": version, "activation_job": job.id}
        )


def store_as_version(
    catalog: Any, engines: EngineStore, result: EngineRebuildResult, source: BuildSource
) -> str:
    """Add a built engine to the model store (``catalog``: a ModelCatalog) through the same checked path
    as an upload, record the version in the engine's meta, and return the version name."""
    from agent.inference.detector import file_sha256

    info = result.engine
    path = engines.path(info.key)
    version = engine_version(
        source.version, info.fingerprint.runtime, info.fingerprint.precision, file_sha256(path)
    )
    built_from = source.version or source.path.name
    catalog.add_file(path, version, None, source=f"engine {info.key} built from {built_from}")
    engines.update_meta(info.key, model_version=version)
    return version
