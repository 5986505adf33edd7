"""The model store as the serving agent uses it: activation, probation, rollback (and, from
agent/store/catalog.py, uploads in, listing, removal).

:class:`ModelManager` is the one service object behind ``/v1/models``, the ``fieldtui-agent models``
CLI (through the API) and pull mode. Activation is a mutating job: load the new model beside the
running one, health-check it on live frames (agent/store/probation.py), swap it into the pipeline between two
frames, repoint ``current``, record it. The previous model stays loaded during the probation window, so a failed probation swaps it
back at once; the reason goes into the history, the job and an SSE ``model`` event.

Every step that changes something is preceded by a history row (``started``) and followed by its
outcome, so a crash anywhere leaves a trail that agent/store/reconcile.py reads at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from agent.core.errors import AgentError, NotFound
from agent.core.faults import fault_point
from agent.inference.nonfinite import probation_reason
from agent.store.catalog import Live, ModelCatalog
from agent.store.history import ModelHistory
from agent.store.models import ModelStore, StoreLock, check_version
from agent.store.outcomes import ModelOutcomes
from agent.store.probation import SETTLE_S, Figures, FrameWatch, compare, health_check, judge
from agent.store.settings import ModelSettings
from fieldtui.protocol import Job, ModelEvent, ProbationStatus

log = logging.getLogger("fieldtui.agent.activation")

STORE_LOCK_WAIT_S = 30.0
BASELINE_TTL_S = 5.0


@dataclass
class _Probation:
    version: str
    previous: str | None  # what served before the activation (shown; not where a failure goes)
    good: str | None  # last good: what it is judged against and where a failure rolls back to
    standby: Any  # last good's detector, kept loaded for an instant rollback
    row: int
    baseline: Figures  # last good's figures
    swapped: float  # monotonic time of the swap
    started: float
    ends: float
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    nonfinite_at_swap: int = 0  # the pipeline's count of NaN/Inf frames when the probation began


class ModelManager(ModelCatalog):
    """See the module docstring. ``attach`` it to an AgentService before submitting jobs."""

    def __init__(self, *args: Any, lock: StoreLock | None = None, **kwargs: Any) -> None:
        """As :class:`ModelCatalog`, plus the store ``lock`` this agent holds until :meth:`close`."""
        super().__init__(*args, **kwargs)
        self.serving: str | None = None  # the version the pipeline runs; None: the configured model
        self.serving_since = time.monotonic()  # when it was swapped in (frames before are another's)
        self.watch = FrameWatch()
        self._probation: _Probation | None = None
        self._baseline_cache: tuple[float, Any] | None = None
        self._store_lock = lock
        self._service: Any = None
        self.poller: Any = None  # pull mode's RegistryPoller, started by the service
        self.outcomes = ModelOutcomes()  # activation and probation verdicts, for /metrics

    @classmethod
    def open(cls, config: Any, db: Any, *, lock_timeout: float = STORE_LOCK_WAIT_S) -> ModelManager:
        """The manager of ``config``'s home, holding the store lock (waits for an offline CLI command)."""
        settings = ModelSettings.from_section(config.sections.get("models"))
        store = ModelStore(config.agent_home.models_dir, settings)
        lock = StoreLock(store.lock_file)
        if not lock.acquire(lock_timeout):
            raise AgentError(
                f"the model store in {store.root} stays locked (another fieldtui-agent serving from this "
                "home, or a `fieldtui-agent models` command still running); stop it and start again",
                status=409,
            )
        return cls(store, ModelHistory(db), config_model=config.model, backend=config.backend, lock=lock)

    # --- lifecycle ------------------------------------------------------------------------------

    def attach(self, service: Any) -> None:
        self._service = service
        service.pipeline.add_listener(self.watch.on_frame)
        service.metrics.registry.register(self.outcomes)

    def close(self) -> None:
        """Stop pull mode and probation (an unfinished probation is recorded as such: the next start
        goes back to the previous model), close the standby model, release the store lock."""
        if self.poller is not None:
            self.poller.stop()
        p = self._take_probation()
        if p is not None:
            self.history.update(
                p.row,
                "interrupted",
                reason=f"the agent stopped during {p.version}'s probation; the next start serves "
                f"{self.good_label(p.good)} again",
            )
            p.standby.close()
        if self._store_lock is not None:
            self._store_lock.release()

    def health_baseline(self) -> Any:
        """Last good's recorded confidence for the health verdict (agent/server/verdict.py), read from the
        history at most every few seconds."""
        from agent.server.verdict import Baseline

        now = time.monotonic()
        cached = self._baseline_cache
        if cached is not None and now - cached[0] < BASELINE_TTL_S:
            return cached[1]
        good = self.last_good()
        figures = self.history.figures_of(good) or {}
        baseline = Baseline(good, figures.get("confidence"))
        self._baseline_cache = (now, baseline)
        return baseline

    def live(self) -> Live:
        with self._lock:
            serving, p = self.serving, self._probation
        if self._service is None:
            return Live()
        probation = None
        if p is not None:
            frames = self.watch.figures(p.swapped).frames
            probation = ProbationStatus(
                version=p.version,
                previous=p.previous,
                started=p.started,
                ends=p.ends,
                frames=frames,
                last_good=p.good,
                baseline_confidence=p.baseline.confidence,
            )
        return Live(
            running=True,
            serving=serving,
            standby=p.good if p is not None else None,
            probation=probation,
            info=getattr(self._service.pipeline.detector, "info", None),
        )

    # --- activation -----------------------------------------------------------------------------

    def _jobs(self) -> Any:
        if self._service is None:
            raise AgentError("no agent is serving: activation needs the running pipeline", status=409)
        return self._service.jobs

    def activation_pending(self, version: str) -> bool:
        """A ``model.activate`` job for ``version`` is queued or running."""
        jobs = self._jobs().list(20, "model.activate")
        return any(j.state in ("queued", "running") and j.params.get("version") == version for j in jobs)

    def submit_activate(self, version: str, *, reason: str | None = None, force: bool = False) -> Job:
        """A ``model.activate`` job; Conflict (naming the earlier reason) for a version that failed or
        was rolled back before, unless ``force``."""
        check_version(version)
        if not self.store.has(version):
            raise NotFound(
                f"no model version {version!r} on this device; push it first (PUT /v1/models/{version})"
            )
        self.check_retry(version, force)
        params = {"version": version} | ({"reason": reason} if reason else {})
        return self._jobs().submit("model.activate", self._activate_job, params, mutating=True)

    def _activate_job(self, ctx: Any) -> dict[str, Any]:
        version: str = ctx.params["version"]
        with self._lock:
            serving, p = self.serving, self._probation
        if version == serving:
            if self.store.current() != version:
                self.store.set_current(version)
            state = "on probation" if p is not None else "proven"
            return {
                "version": version,
                "outcome": "unchanged",
                "message": f"{version} already serves ({state})",
            }
        # Every candidate is judged against last good - never against a model still on probation.
        good = self.last_good(excluding=version)
        row, new, ref, ref_loaded, figures = self._load_and_check(ctx, version, serving, good, p)
        # The swap is the point of no return: no cancellation from here on.
        ctx.progress(0.7, f"switching to {version}")
        baseline_infer = self._service.pipeline.sample().stages_ms.infer
        swap_start = time.monotonic()
        with self._lock:
            since = self.serving_since
        ended = self._take_probation()
        old, swapped = self._switch(ctx, version, serving, good, new, ended)
        standby = self._keep_standby(serving, good, old, ref if ref_loaded else None, ended)
        details: dict[str, Any] = {"health": figures, "swap_s": round(swapped - swap_start, 4)}
        if self.settings.probation_s > 0 and standby is not None:
            live = ended is None and serving == good
            baseline = self._baseline_of(good, live, since, swap_start, baseline_infer)
            details["baseline"] = baseline[1]
            self.history.update(row, "probation", details=details)
            self._start_probation(version, serving, good, standby, row, baseline[0], swapped)
            fault_point("in_probation", version)
        else:
            if standby is not None:
                standby.close()
            self.history.update(
                row, "good", reason="probation off ([models] probation_s = 0)", details=details
            )
        self._baseline_cache = None
        self.prune()
        log.info("model %s activated (previous: %s)", version, self.label(serving))
        entry = self.history.get(row)
        return entry.model_dump(mode="json") if entry else {"version": version}

    def _load_and_check(
        self, ctx: Any, version: str, serving: str | None, good: str | None, p: _Probation | None
    ) -> tuple[int, Any, Any, bool, dict[str, Any]]:
        """Verify and load ``version`` beside what serves and health-check it on live frames against last
        good: (history row, new detector, reference, reference loaded here, health figures). On any
        failure or cancel, what was loaded here is closed and the row says why."""
        ctx.progress(0.05, f"verifying {version}")
        self.outcomes.started(version)
        try:
            manifest = self.store.verify(version)
        except AgentError as err:
            self.outcomes.count(version, "failed")
            self.history.add(
                "activate", version, "refused", previous=serving, reason=str(err), job_id=ctx.job_id
            )
            raise
        row = self.history.add("activate", version, "started", previous=serving, job_id=ctx.job_id)
        new = ref = None
        ref_loaded = False
        try:
            ctx.progress(0.15, f"loading {version} beside {self.label(serving)}")
            new = self.load(version, manifest)
            fault_point("after_load", version)
            ctx.check_cancelled()
            ref, ref_loaded = self._reference(good, serving, p)
            ctx.progress(0.4, f"health check on live frames, beside {self.good_label(good)}")
            figures = health_check(
                new,
                ref,
                self.watch.images(),
                self.settings,
                label=version,
                current_label=self.label(good),
                serving_label=self.label(serving),
            )
            fault_point("after_health", version)
            ctx.check_cancelled()
        except BaseException as err:
            for detector in (new, ref if ref_loaded else None):
                if detector is not None:
                    detector.close()
            why = str(err) if isinstance(err, AgentError) else f"cancelled or crashed ({type(err).__name__})"
            self.history.update(row, "failed", reason=why)
            self.outcomes.count(version, "failed")
            raise
        return row, new, ref, ref_loaded, figures

    def _switch(
        self,
        ctx: Any,
        version: str,
        serving: str | None,
        good: str | None,
        new: Any,
        ended: _Probation | None,
    ) -> tuple[Any, float]:
        """Swap ``new`` into the pipeline between two frames and repoint ``current``: (the detector it
        replaced, when). A probation still running ends here, unjudged."""
        if ended is not None:  # one activation at a time: the first one's probation ends, unjudged
            self.history.update(
                ended.row,
                "superseded",
                reason=f"superseded: {version} was activated during its probation, before a verdict; "
                f"{version} is judged against {self.good_label(good)}",
            )
        why = f" ({ctx.params['reason']})" if ctx.params.get("reason") else ""  # pull mode says where from
        summary = f"{version} activated{why}; on probation against {self.good_label(good)}"
        event = ModelEvent(
            **new.info.model_dump(),
            change="activated",
            previous=serving,
            reason=ctx.params.get("reason"),
            summary=summary if self.settings.probation_s > 0 else f"{version} activated",
        )
        old = self._service.swap_detector(new, event=event)
        swapped = time.monotonic()
        with self._lock:
            self.serving, self.serving_since = version, swapped
        self.outcomes.count(version, "ok")
        fault_point("after_swap", version)
        self.store.set_current(version)
        fault_point("after_symlink", version)
        return old, swapped

    @staticmethod
    def _keep_standby(
        serving: str | None, good: str | None, old: Any, loaded_ref: Any, ended: _Probation | None
    ) -> Any:
        """Keep last good loaded for an instant rollback (the reference loaded for the check, the ended
        probation's standby, or the model just replaced when it was last good); close every other."""
        if loaded_ref is not None:
            standby = loaded_ref
        elif ended is not None and ended.good == good:
            standby = ended.standby
        else:
            standby = old if serving == good else None
        for detector in (old, ended.standby if ended is not None else None):
            if detector is not None and detector is not standby:
                detector.close()
        return standby

    def _baseline_of(
        self, good: str | None, live: bool, since: float, swap_start: float, infer_ms: float | None
    ) -> tuple[Figures, dict[str, Any]]:
        """Last good's figures for probation, and how they were had: measured live just before the swap
        when it was what served (the fairest: the same scene), else those recorded when it passed (or
        served) - never a candidate's."""
        before = self.watch.figures(
            max(swap_start - max(self.settings.probation_s, 10.0), since + SETTLE_S), swap_start
        )
        if live and before.frames >= self.settings.probation_min_frames:
            baseline, measured = Figures(before.frames, before.confidence, infer_ms or None), "live"
        else:
            recorded = self.history.figures_of(good) or {}
            baseline = Figures(
                int(recorded.get("frames") or 0), recorded.get("confidence"), recorded.get("infer_ms")
            )
            measured = "recorded" if recorded else "none"
        return baseline, {**baseline.as_dict(), "of": self.label(good), "measured": measured}

    def _reference(self, good: str | None, serving: str | None, p: _Probation | None) -> tuple[Any, bool]:
        """Last good's detector for the side-by-side speed gate: (detector, loaded here). The one
        serving or on standby when it is last good; else loaded now (and kept as the standby)."""
        if p is None and serving == good:
            return self._service.pipeline.detector, False
        if p is not None and p.good == good and p.standby is not None:
            return p.standby, False
        return self.load(good, self.store.verify(good) if good is not None else None), True

    # --- probation ------------------------------------------------------------------------------

    def _start_probation(
        self,
        version: str,
        previous: str | None,
        good: str | None,
        standby: Any,
        row: int,
        baseline: Figures,
        swapped: float,
    ) -> None:
        now = time.time()
        p = _Probation(
            version, previous, good, standby, row, baseline, swapped, now, now + self.settings.probation_s
        )
        p.nonfinite_at_swap = getattr(self._service.pipeline, "nonfinite_frames", 0)
        p.thread = threading.Thread(
            target=self._watch_probation, args=(p,), name="model-probation", daemon=True
        )
        with self._lock:
            self._probation = p
        p.thread.start()

    def _take_probation(self) -> _Probation | None:
        with self._lock:
            p, self._probation = self._probation, None
        if p is not None:
            p.stop.set()
            if p.thread is not None and p.thread is not threading.current_thread():
                p.thread.join(5.0)
        return p

    def _watch_probation(self, p: _Probation) -> None:
        pipeline = self._service.pipeline
        s = self.settings
        deadline = p.swapped + s.probation_s
        extended = False
        while True:
            if p.stop.wait(0.2):
                return
            if pipeline.state == "failed":
                error = pipeline.status().error or "the pipeline failed"
                return self._fail_probation(
                    p, f"the pipeline fails with {p.version}: {error}", Figures(0, None)
                )
            if time.monotonic() < deadline:
                continue
            new = self.watch.figures(p.swapped + SETTLE_S)
            if new.frames < s.probation_min_frames and not extended:
                extended, deadline = True, deadline + s.probation_s  # a quiet source: wait once more
                continue
            break
        new = Figures(new.frames, new.confidence, pipeline.sample().stages_ms.infer or None)
        # NaN/Inf outputs while on probation (agent/inference/nonfinite.py), counted by the pipeline since the
        # swap: judged first, as the more specific reason (such frames also lose their confidence)
        bad = getattr(pipeline, "nonfinite_frames", 0) - p.nonfinite_at_swap
        reason = probation_reason(bad, new.frames, p.version)
        reason = reason or judge(new, p.baseline, s, label=p.version, old_label=self.label(p.good))
        if reason is not None:
            return self._fail_probation(p, reason, new)
        with self._lock:
            if self._probation is not p:
                return
            self._probation = None
        note = (
            None
            if new.frames >= s.probation_min_frames
            else f"only {new.frames} frames to judge (source down?)"
        )
        self.history.update(p.row, "good", reason=note, details={"probation": new.as_dict()})
        self.outcomes.count(p.version, "passed")
        self._baseline_cache = None
        p.standby.close()
        log.info("model %s passed probation (%s)", p.version, new.as_dict())
        self.prune()

    def _fail_probation(self, p: _Probation, reason: str, figures: Figures) -> None:
        log.warning(
            "model %s failed probation: %s; rolling back to last good %s",
            p.version,
            reason,
            self.label(p.good),
        )
        self.history.update(p.row, "probation", reason=reason, details={"probation": figures.as_dict()})
        self.outcomes.count(p.version, "rolled_back")
        seconds = time.monotonic() - p.swapped
        why = compare(figures, p.baseline, self.label(p.good), seconds) if figures.frames else reason
        summary = f"auto-rollback from {p.version} to {self.label(p.good)}: {why}"
        try:
            self.submit_rollback(reason=reason, automatic_from=p.version, summary=summary)
        except AgentError as err:  # shutting down: the next start rolls back (the row is still open)
            log.error("automatic rollback not started: %s", err)

    # --- rollback -------------------------------------------------------------------------------

    def submit_rollback(
        self, *, reason: str | None = None, automatic_from: str | None = None, summary: str | None = None
    ) -> Job:
        """A ``model.rollback`` job to last good; Conflict when there is nowhere to go."""
        with self._lock:
            serving, p = self.serving, self._probation
        if p is None and automatic_from is None:
            self.rollback_target(serving)  # Conflict now, not a failed job, when there is nowhere to go
        params: dict[str, Any] = {"reason": reason or "rollback requested"}
        if automatic_from is not None:
            params["from"] = automatic_from
        if summary is not None:
            params["summary"] = summary
        return self._jobs().submit("model.rollback", self._rollback_job, params, mutating=True)

    def _rollback_job(self, ctx: Any) -> dict[str, Any]:
        svc = self._service
        reason: str = ctx.params["reason"]
        automatic = ctx.params.get("from")
        with self._lock:
            serving, p = self.serving, self._probation
        unchanged = {
            "outcome": "unchanged",
            "message": f"{automatic} no longer on probation; nothing rolled back",
        }
        if automatic is not None and (p is None or p.version != automatic):
            return unchanged
        p = self._take_probation()  # None when it ended meanwhile (passed, or superseded)
        if automatic is not None and p is None:
            return unchanged
        target = p.good if p is not None else self.rollback_target(serving)
        if p is not None and p.standby is not None:  # last good kept loaded: no load, an instant swap
            detector = p.standby
        else:
            ctx.progress(0.1, f"verifying {self.label(target)}")
            manifest = self.store.verify(target) if target is not None else None
            ctx.progress(0.3, f"loading {self.label(target)}")
            detector = self.load(target, manifest)
        if p is not None:
            replaced_row: int | None = p.row
        else:  # the serving version's own activation gets the verdict "rolled back"
            replaced = self.history.verdicts().get(serving) if serving is not None else None
            replaced_row = replaced[2] if replaced is not None else None
        why_target = (
            "the newest version that passed probation"
            if target is not None
            else "no version passed probation"
        )
        summary = ctx.params.get("summary") or (
            f"rollback from {self.label(serving)} to {self.label(target)} ({why_target}): {reason}"
        )
        action = "auto_rollback" if automatic is not None else "rollback"
        shown = summary if automatic is not None else reason  # an automatic action says all of why
        row = self.history.add(action, target, "started", previous=serving, reason=shown, job_id=ctx.job_id)
        ctx.progress(0.7, f"switching back to {self.label(target)}")
        change = "auto_rolled_back" if automatic is not None else "rolled_back"
        event = ModelEvent(
            **detector.info.model_dump(), change=change, previous=serving, reason=reason, summary=summary
        )
        old = svc.swap_detector(detector, event=event)
        with self._lock:
            self.serving, self.serving_since = target, time.monotonic()
        self.store.set_current(target)
        old.close()
        if replaced_row is not None:
            self.history.update(replaced_row, "rolled_back", reason=reason)
        self.history.update(row, "good")
        self._baseline_cache = None
        log.warning("%s", summary)
        entry = self.history.get(row)
        return entry.model_dump(mode="json") if entry else {"version": target}
