"""Long operations as jobs: an id at once, progress and stage text while they run, a result kept.

Registering a new kind of job is one call::

    def rebuild(ctx: JobContext) -> dict:
        for i, step in enumerate(steps):
            ctx.check_cancelled()                 # raises JobCancelled if someone cancelled
            ctx.progress(i / len(steps), step.name)
            step.run()
        return {"engine": str(path)}              # the job's result (a dict or a protocol model)

    job = runner.submit("engine.rebuild", rebuild, {"backend": "tensorrt"}, mutating=True)

Mutating jobs (anything that changes the pipeline, the model or the files) run one at a time, in the
order they were submitted, on one worker thread; read-only jobs run on their own threads alongside.
Cancelling a queued job removes it; a running job is asked to stop (cooperatively: the job checks
``ctx.cancelled`` between steps). Every change is saved in ``state.db`` and handed to ``on_change``
(the SSE ``job`` event), so jobs and results survive a restart; a job that was running when the agent
died is marked failed when the next agent starts.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from agent.core.errors import AgentError, Conflict, NotFound
from agent.core.state import StateDB
from fieldtui.protocol import Job

log = logging.getLogger("fieldtui.agent.jobs")

JobResult = dict[str, Any] | BaseModel | None
JobFn = Callable[["JobContext"], JobResult]

FINISHED = ("succeeded", "failed", "cancelled")
_PROGRESS_EVERY_S = 0.25  # progress saved and published at most this often (stage changes always)


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.check_cancelled`; the runner marks the job cancelled."""


class JobContext:
    """What a job function gets: its params, a way to report progress, and the cancel flag."""

    def __init__(self, runner: JobRunner, job_id: str, params: dict[str, Any], cancel: threading.Event):
        self._runner = runner
        self.job_id = job_id
        self.params = params
        self._cancel = cancel

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once (raising JobCancelled) when the job is cancelled."""
        if self._cancel.wait(seconds):
            raise JobCancelled()

    def progress(self, fraction: float, stage: str | None = None) -> None:
        self._runner._progress(self.job_id, min(1.0, max(0.0, float(fraction))), stage)


class _Entry:
    __slots__ = ("job", "fn", "mutating", "cancel", "last_emit", "params")

    def __init__(self, job: Job, fn: JobFn, mutating: bool, params: dict[str, Any]) -> None:
        self.job = job
        self.fn = fn
        self.mutating = mutating
        self.params = params  # the real params; job.params is what may be shown (redacted)
        self.cancel = threading.Event()
        self.last_emit = 0.0


class JobRunner:
    """Runs, tracks and persists jobs; see the module docstring."""

    def __init__(
        self,
        db: StateDB | None = None,
        on_change: Callable[[Job], None] | None = None,
        *,
        memory: int = 200,
    ) -> None:
        self._db = db
        self.on_change = on_change
        self._lock = threading.Condition()
        self._active: dict[str, _Entry] = {}
        self._queue: deque[_Entry] = deque()  # mutating jobs waiting for the worker
        self._recent: OrderedDict[str, Job] = OrderedDict()  # finished jobs, newest last
        self._memory = memory
        self._closing = False
        self._threads: set[threading.Thread] = set()
        self._worker = threading.Thread(target=self._work, name="jobs-mutating", daemon=True)
        if db is not None:
            failed = db.fail_interrupted_jobs(time.time())
            if failed:
                log.warning("%d job(s) were cut short by the last agent restart; marked failed", failed)
            db.prune_jobs()
        self._worker.start()

    # --- public ---------------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        fn: JobFn,
        params: dict[str, Any] | None = None,
        *,
        mutating: bool = True,
        shown_params: dict[str, Any] | None = None,
    ) -> Job:
        """Queue ``fn`` as a job of ``kind`` and return it (state ``queued``) at once.

        ``shown_params`` replaces ``params`` in what is saved and returned (redacted URIs and the
        like); ``fn`` still sees the real ``params`` through its context.
        """
        params = dict(params or {})
        job = Job(
            id=uuid.uuid4().hex,
            kind=kind,
            state="queued",
            created=time.time(),
            params=dict(shown_params if shown_params is not None else params),
        )
        entry = _Entry(job, fn, mutating, params)
        with self._lock:
            if self._closing:
                raise Conflict("the agent is shutting down; submit the job again once it is back")
            self._active[job.id] = entry
        self._changed(job)
        if mutating:
            with self._lock:
                self._queue.append(entry)
                self._lock.notify_all()
        else:
            thread = threading.Thread(target=self._run, args=(entry,), name=f"job-{kind}", daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            entry = self._active.get(job_id)
            job = entry.job if entry else self._recent.get(job_id)
        if job is None and self._db is not None:
            job = self._db.get_job(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r} on this agent; GET /v1/jobs lists the recent ones")
        return job

    def list(self, limit: int = 50, kind: str | None = None) -> list[Job]:
        """Recent jobs, newest first (the active ones from memory, the rest from state.db)."""
        with self._lock:
            jobs = {e.job.id: e.job for e in self._active.values()}
            jobs.update({j.id: j for j in self._recent.values() if j.id not in jobs})
        if self._db is not None:
            for job in self._db.recent_jobs(limit, kind):
                jobs.setdefault(job.id, job)
        picked = [j for j in jobs.values() if kind is None or j.kind == kind]
        picked.sort(key=lambda j: j.created, reverse=True)
        return picked[:limit]

    def cancel(self, job_id: str) -> Job:
        """Remove a queued job, or ask a running one to stop; returns the job as it is now."""
        with self._lock:
            entry = self._active.get(job_id)
            finished = entry is None or entry.job.state in FINISHED
            queued = not finished and entry in self._queue
            if queued:
                self._queue.remove(entry)
        if finished:
            job = self.get(job_id)  # NotFound if unknown
            raise Conflict(f"job {job_id} already {job.state}; there is nothing to cancel")
        if queued:
            return self._finish(entry, "cancelled", error="cancelled before it started")
        entry.cancel.set()
        log.info("cancel requested for job %s (%s)", job_id, entry.job.kind)
        return entry.job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job finished (or ``timeout``); for the CLI and tests."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while job_id in self._active:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._lock.wait(left)
        return self.get(job_id)

    def counts(self) -> dict[str, int]:
        """Jobs per state (for metrics): every job in state.db, or the ones in memory without one."""
        if self._db is not None:
            return self._db.count_jobs_by_state()
        with self._lock:
            jobs = [e.job for e in self._active.values()] + list(self._recent.values())
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts

    def shutdown(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, drop the queued ones, ask running ones to stop and wait for them.

        A job still running after ``timeout`` is left to die with the process; the next start
        marks it failed, so nothing claims to have succeeded that did not.
        """
        with self._lock:
            self._closing = True
            dropped = list(self._queue)
            self._queue.clear()
            for entry in dropped:
                self._active.pop(entry.job.id, None)
            for entry in self._active.values():
                entry.cancel.set()
            self._lock.notify_all()
            threads = [self._worker, *self._threads]
        for entry in dropped:
            self._finish(entry, "cancelled", error="cancelled: the agent shut down before it started")
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("job thread %s did not stop within %.0f s; leaving it", thread.name, timeout)

    # --- internals ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                entry = self._queue.popleft()
            self._run(entry)

    def _run(self, entry: _Entry) -> None:
        try:
            with self._lock:
                entry.job = entry.job.model_copy(update={"state": "running", "started": time.time()})
            self._changed(entry.job)
            log.info("job %s (%s) started", entry.job.id, entry.job.kind)
            try:
                if entry.cancel.is_set():
                    raise JobCancelled()
                result = entry.fn(JobContext(self, entry.job.id, entry.params, entry.cancel))
                if isinstance(result, BaseModel):
                    result = result.model_dump(mode="json")
                if result is not None and not isinstance(result, dict):
                    raise TypeError(f"job function returned {type(result).__name__}, not a dict or model")
            except JobCancelled:
                self._finish(entry, "cancelled", error="cancelled on request")
            except AgentError as err:
                self._finish(entry, "failed", error=str(err))
            except Exception as err:  # noqa: BLE001 - a bug in a job must not kill the worker
                log.exception("job %s (%s) crashed", entry.job.id, entry.job.kind)
                self._finish(
                    entry,
                    "failed",
                    error=f"internal error in the {entry.job.kind} job ({type(err).__name__}); "
                    "see the agent log (GET /v1/logs) and report it",
                )
            else:
                self._finish(entry, "succeeded", result=result)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _progress(self, job_id: str, fraction: float, stage: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            entry = self._active.get(job_id)
            if entry is None or entry.job.state != "running":
                return
            new_stage = entry.job.stage if stage is None else stage
            due = new_stage != entry.job.stage or fraction >= 1.0
            entry.job = entry.job.model_copy(update={"progress": fraction, "stage": new_stage})
            if not due and now - entry.last_emit < _PROGRESS_EVERY_S:
                return
            entry.last_emit = now
            job = entry.job
        self._changed(job)

    def _finish(
        self, entry: _Entry, state: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> Job:
        update: dict[str, Any] = {"state": state, "finished": time.time(), "result": result, "error": error}
        if state == "succeeded":
            update["progress"] = 1.0
        with self._lock:
            entry.job = job = entry.job.model_copy(update=update)
        log.log(
            logging.WARNING if state == "failed" else logging.INFO,
            "job %s (%s) %s%s",
            job.id,
            job.kind,
            state,
            f": {error}" if error else "",
        )
        # saved and announced before wait() returns: whoever waited finds the final state everywhere
        self._changed(job)
        with self._lock:
            self._active.pop(job.id, None)
            self._recent[job.id] = job
            while len(self._recent) > self._memory:
                self._recent.popitem(last=False)
            self._lock.notify_all()
        return job

    def _changed(self, job: Job) -> None:
        if self._db is not None:
            try:
                self._db.save_job(job)
            except AgentError as err:
                log.error("job %s not saved: %s", job.id, err)
        if self.on_change is not None:
            self.on_change(job)
