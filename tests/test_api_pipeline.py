"""Pipeline control over the API (start, stop, restart and source change as jobs), health verdicts,
device identity and metrics, against an in-process agent on 127.0.0.1."""

from __future__ import annotations

import threading
import time

from agent.server.device import find_accelerators
from fieldtui.protocol import DeviceInfo, HealthReport, Job, PipelineStatus


def wait_until(predicate, timeout: float = 15.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def test_stop_and_start_answer_directly_and_health_follows(agent_inproc):
    with agent_inproc.client() as c:
        wait_until(lambda: c.get("/v1/health").json()["status"] == "ok")
        stopped = PipelineStatus.model_validate(c.post("/v1/pipeline/stop").json())
        assert stopped.state == "stopped"
        health = HealthReport.model_validate(c.get("/v1/health").json())
        assert health.status == "degraded"
        assert health.reasons == [
            "pipeline stopped (stopped on request); POST /v1/pipeline/start to start it"
        ]
        frames = c.get("/v1/status").json()["sample"]["frames_total"]
        time.sleep(0.3)
        assert c.get("/v1/status").json()["sample"]["frames_total"] == frames  # really stopped
        started = PipelineStatus.model_validate(c.post("/v1/pipeline/start").json())
        assert started.state in ("starting", "running")
        wait_until(lambda: c.get("/v1/status").json()["sample"]["frames_total"] > frames)
        wait_until(lambda: c.get("/v1/health").json()["status"] == "ok")


def test_restart_and_source_change_are_jobs_that_run_one_at_a_time(agent_inproc):
    service = agent_inproc.service
    runs: list[tuple[str, float, float]] = []
    real_set_source = service.pipeline.set_source

    def timed_set_source(uri: str) -> None:
        t0 = time.monotonic()
        real_set_source(uri)
        runs.append(("source", t0, time.monotonic()))

    service.pipeline.set_source = timed_set_source
    with agent_inproc.client() as c:
        r1 = c.post("/v1/pipeline/restart")
        r2 = c.put("/v1/pipeline/source", json={"uri": "demo:?seed=11"})
        r3 = c.put("/v1/pipeline/source", json={"uri": "demo:?seed=12&size=320x240"})
        assert [r.status_code for r in (r1, r2, r3)] == [202, 202, 202]
        jobs = [Job.model_validate(r.json()) for r in (r1, r2, r3)]
        assert [j.kind for j in jobs] == ["pipeline.restart", "pipeline.source", "pipeline.source"]
        done = [service.jobs.wait(j.id, 30) for j in jobs]
        assert [j.state for j in done] == ["succeeded"] * 3
        # queued behind each other: each started after the one before had finished
        for before, after in zip(done, done[1:], strict=False):
            assert after.started >= before.finished
        assert done[2].result == {"source": "demo:?seed=12&size=320x240", "state": done[2].result["state"]}
        status = c.get("/v1/status").json()
        assert status["source"]["uri"] == "demo:?seed=12&size=320x240"
        wait_until(lambda: c.get("/v1/status").json()["source"]["width"] == 320)
        listed = c.get("/v1/jobs", params={"kind": "pipeline.source"}).json()["jobs"]
        assert [j["id"] for j in listed] == [jobs[2].id, jobs[1].id]


def test_a_source_that_cannot_open_fails_its_job_and_the_old_one_runs_on(agent_inproc):
    with agent_inproc.client() as c:
        r = c.put("/v1/pipeline/source", json={"uri": "rtsp://viewer:s3cret@127.0.0.1:1/stream"})
        assert r.status_code == 202
        job = agent_inproc.service.jobs.wait(r.json()["id"], 30)
        assert job.state == "failed"
        assert job.error.startswith("could not open rtsp://***@127.0.0.1:1/stream")
        assert "s3cret" not in c.get(f"/v1/jobs/{job.id}").text
        status = c.get("/v1/status").json()
        assert status["source"]["uri"] == "demo:" and status["state"] == "running"
        logs = c.get("/v1/logs", params={"limit": 2000}).text
        assert "s3cret" not in logs


def test_cancelling_a_queued_pipeline_job(agent_inproc):
    service = agent_inproc.service
    gate = threading.Event()
    blocker = service.jobs.submit("test.block", lambda ctx: gate.wait(10) and None, mutating=True)
    with agent_inproc.client() as c:
        queued = c.put("/v1/pipeline/source", json={"uri": "demo:?seed=99"}).json()
        assert queued["state"] == "queued"
        cancelled = c.post(f"/v1/jobs/{queued['id']}/cancel").json()
        assert cancelled["state"] == "cancelled"
        gate.set()
        service.jobs.wait(blocker.id, 10)
        assert c.get("/v1/status").json()["source"]["uri"] == "demo:"  # never switched


def test_a_covered_camera_makes_health_degraded_with_the_reason(inproc_agent):
    agent = inproc_agent(source="demo:?faults=cover@0-600")
    with agent.client() as c:
        health = wait_until(
            lambda: (h := c.get("/v1/health").json())["status"] != "ok" and h["reasons"] and h, timeout=20
        )
    assert health["status"] == "degraded"
    assert any(r.startswith("camera:") for r in health["reasons"])


def test_a_source_that_never_delivers_is_failing(inproc_agent, monkeypatch):
    from agent.server import service as service_module

    monkeypatch.setattr(service_module, "START_GRACE_S", 0.5)  # instead of waiting 10 s
    agent = inproc_agent(source="rtsp://127.0.0.1:1/cam")  # nothing listens there: retried forever
    with agent.client() as c:
        health = wait_until(lambda: (h := c.get("/v1/health").json())["status"] == "failing" and h)
        status = c.get("/v1/status").json()
    assert status["state"] == "reconnecting"
    assert health["reasons"][0] == "no frames processed in the last 2 s"
    assert any(r.startswith("source down: could not open rtsp://127.0.0.1:1/cam") for r in health["reasons"])


def test_device_identity_is_stable_and_lists_backends(inproc_agent, agent_home):
    first = inproc_agent(agent_home)
    with first.client() as c:
        device = DeviceInfo.model_validate(c.get("/v1/device").json())
    first.stop()
    again = inproc_agent(agent_home)
    with again.client() as c:
        assert c.get("/v1/device").json()["id"] == device.id  # kept in the home
    assert len(device.id) == 32
    assert device.api_url == first.url
    keys = {b.key: b for b in device.backends}
    assert keys["onnxruntime"].available
    assert {"tensorrt", "hailo"} <= set(keys)
    assert all(b.reason for b in device.backends)  # every backend says why (not)


def test_accelerators_are_found_from_device_nodes(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "hailo0").touch()
    (tmp_path / "dev" / "nvhost-ctrl-gpu").touch()
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    found = find_accelerators(tmp_path)
    assert found == [
        "board: Raspberry Pi 5 Model B Rev 1.0",
        "Hailo (hailo0)",
        "NVIDIA Jetson GPU (nvhost-ctrl-gpu)",
    ]
    assert find_accelerators(tmp_path / "nothing") == []


def test_metrics_include_the_control_plane(agent_inproc):
    with agent_inproc.client() as c:
        job = c.post("/v1/pipeline/restart").json()
        agent_inproc.service.jobs.wait(job["id"], 30)
        text = c.get("/metrics").text
    for name in (
        "inference_latency_seconds_bucket",
        "detections_total",
        "frame_drop_rate",
        'fieldtui_agent_jobs{state="succeeded"} 1.0',
        "fieldtui_agent_auth_failures_total 0.0",
        "fieldtui_agent_sse_subscribers 0.0",
        "fieldtui_agent_uptime_seconds",
    ):
        assert name in text, name
