"""The job runner and state.db: ordering, progress, cancellation, errors, persistence across restarts."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from agent.core.errors import Conflict, ModelError, NotFound
from agent.core.jobs import JobContext, JobRunner
from agent.core.state import INTERRUPTED, NEVER_STARTED, StateDB
from fieldtui.protocol import Job


@pytest.fixture
def db(tmp_path):
    db = StateDB(tmp_path / "state.db")
    yield db
    db.close()


@pytest.fixture
def runner(db):
    events: list[Job] = []
    runner = JobRunner(db, on_change=events.append)
    runner.events = events  # type: ignore[attr-defined]
    yield runner
    runner.shutdown(timeout=5)


def test_state_db_is_wal_and_private(db, tmp_path):
    (mode,) = db.execute("PRAGMA journal_mode")[0]
    assert mode == "wal"
    assert (tmp_path / "state.db").stat().st_mode & 0o777 == 0o600


def test_a_job_reports_progress_and_keeps_its_result(runner):
    gate = threading.Event()

    def work(ctx: JobContext) -> dict:
        ctx.progress(0.5, "half way")
        gate.wait(5)
        return {"answer": 42, "params": ctx.params}

    job = runner.submit("test.work", work, {"n": 1})
    assert job.state == "queued" and len(job.id) == 32
    deadline = time.monotonic() + 5
    while runner.get(job.id).stage != "half way" and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = runner.get(job.id)
    assert (seen.state, seen.progress, seen.stage) == ("running", 0.5, "half way")
    gate.set()
    done = runner.wait(job.id, 5)
    assert done.state == "succeeded"
    assert done.progress == 1.0
    assert done.result == {"answer": 42, "params": {"n": 1}}
    assert done.started is not None and done.finished is not None and done.finished >= done.started
    states = [e.state for e in runner.events if e.id == job.id]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    assert any(e.stage == "half way" for e in runner.events)


def test_mutating_jobs_run_one_at_a_time_in_order(runner):
    running = 0
    peak = 0
    order: list[int] = []
    lock = threading.Lock()

    def make(i: int):
        def work(ctx: JobContext) -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
                order.append(i)
            time.sleep(0.02)
            with lock:
                running -= 1

        return work

    jobs = [runner.submit("test.mutate", make(i), mutating=True) for i in range(5)]
    for job in jobs:
        assert runner.wait(job.id, 10).state == "succeeded"
    assert peak == 1
    assert order == list(range(5))


def test_read_only_jobs_run_alongside_a_mutating_one(runner):
    release = threading.Event()
    reader_ran = threading.Event()
    blocking = threading.Event()

    def block(ctx: JobContext) -> None:
        blocking.set()
        release.wait(5)

    blocker = runner.submit("test.block", block, mutating=True)
    assert blocking.wait(5)  # the mutating job runs (was a race: it could still be queued below)
    reader = runner.submit("test.read", lambda ctx: reader_ran.set(), mutating=False)
    assert runner.wait(reader.id, 5).state == "succeeded"
    assert reader_ran.is_set()
    assert runner.get(blocker.id).state == "running"  # the reader did not wait for it
    release.set()
    assert runner.wait(blocker.id, 5).state == "succeeded"


def test_cancelling_a_queued_job_removes_it(runner):
    release = threading.Event()
    ran = threading.Event()
    first = runner.submit("test.block", lambda ctx: release.wait(5) and None)
    second = runner.submit("test.never", lambda ctx: ran.set())
    cancelled = runner.cancel(second.id)
    assert cancelled.state == "cancelled"
    assert "before it started" in (cancelled.error or "")
    release.set()
    runner.wait(first.id, 5)
    time.sleep(0.05)
    assert not ran.is_set()
    assert runner.get(second.id).state == "cancelled"


def test_cancelling_a_running_job_is_cooperative(runner):
    started = threading.Event()
    steps: list[int] = []

    def long(ctx: JobContext) -> dict:
        for i in range(1000):
            started.set()
            ctx.progress(i / 1000, f"step {i}")
            steps.append(i)
            ctx.sleep(0.01)
        return {}

    job = runner.submit("test.long", long)
    assert started.wait(5)
    asked = runner.cancel(job.id)
    assert asked.state == "running"  # asked, not yet stopped
    done = runner.wait(job.id, 5)
    assert done.state == "cancelled"
    assert len(steps) < 1000


def test_cancelling_a_finished_or_unknown_job_says_why(runner):
    job = runner.submit("test.quick", lambda ctx: {"ok": True})
    runner.wait(job.id, 5)
    with pytest.raises(Conflict, match="already succeeded"):
        runner.cancel(job.id)
    with pytest.raises(NotFound, match="no job with id"):
        runner.cancel("0" * 32)
    with pytest.raises(NotFound):
        runner.get("nope")


def test_failures_keep_the_actionable_message_and_hide_internals(runner, caplog):
    def bad_model(ctx):
        raise ModelError("model.onnx has no detector output; re-export it with `yolo export format=onnx`")

    def bug(ctx):
        raise KeyError("internal-detail")

    a = runner.wait(runner.submit("test.model", bad_model).id, 5)
    assert a.state == "failed"
    assert a.error.startswith("model.onnx has no detector output")
    b = runner.wait(runner.submit("test.bug", bug).id, 5)
    assert b.state == "failed"
    assert "internal error in the test.bug job (KeyError)" in b.error
    assert "internal-detail" not in b.error
    assert "GET /v1/logs" in b.error
    assert "Traceback" in caplog.text  # the traceback is in the log, not in the job


def test_job_list_is_newest_first_and_filters_by_kind(runner):
    ids = [runner.wait(runner.submit(f"test.k{i % 2}", lambda ctx: None).id, 5).id for i in range(4)]
    listed = runner.list(10)
    assert [j.id for j in listed][:4] == ids[::-1]
    assert {j.kind for j in runner.list(10, kind="test.k1")} == {"test.k1"}


def test_shown_params_hide_secrets_but_the_job_gets_the_real_ones(runner, db):
    seen = {}
    job = runner.submit(
        "test.secret",
        lambda ctx: seen.update(ctx.params),
        {"uri": "rtsp://admin:hunter2@cam/live"},
        shown_params={"uri": "rtsp://***@cam/live"},
    )
    runner.wait(job.id, 5)
    assert seen["uri"] == "rtsp://admin:hunter2@cam/live"
    assert runner.get(job.id).params == {"uri": "rtsp://***@cam/live"}
    assert "hunter2" not in str(db.execute("SELECT params FROM jobs")[0][0])


def test_jobs_and_results_survive_a_restart_and_interrupted_ones_fail(tmp_path):
    path = tmp_path / "state.db"
    db = StateDB(path)
    runner = JobRunner(db)
    done = runner.wait(runner.submit("test.done", lambda ctx: {"value": 7}).id, 5)
    # A process that dies mid-job leaves rows in these states; write them as it would have.
    now = time.time()
    db.save_job(Job(id="a" * 32, kind="test.running", state="running", created=now, started=now))
    db.save_job(Job(id="b" * 32, kind="test.queued", state="queued", created=now))
    runner.shutdown(5)
    db.close()

    db2 = StateDB(path)
    runner2 = JobRunner(db2)
    try:
        again = runner2.get(done.id)
        assert again.state == "succeeded" and again.result == {"value": 7}
        running = runner2.get("a" * 32)
        assert running.state == "failed" and running.error == INTERRUPTED
        queued = runner2.get("b" * 32)
        assert queued.state == "failed" and queued.error == NEVER_STARTED
        assert {j.id for j in runner2.list(10)} >= {done.id, "a" * 32, "b" * 32}
    finally:
        runner2.shutdown(5)
        db2.close()


def test_shutdown_refuses_new_jobs_and_cancels_queued_ones(db):
    runner = JobRunner(db)
    first = runner.submit("test.block", lambda ctx: ctx.sleep(5))
    second = runner.submit("test.queued", lambda ctx: None)
    deadline = time.monotonic() + 5
    while runner.get(first.id).state != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.shutdown(5)
    assert runner.get(first.id).state == "cancelled"
    assert runner.get(second.id).state == "cancelled"
    with pytest.raises(Conflict, match="shutting down"):
        runner.submit("test.late", lambda ctx: None)


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(Exception, match="newer fieldtui-agent"):
        StateDB(path)
