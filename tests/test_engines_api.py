"""``/v1/engines`` against a real agent on 127.0.0.1 (in-process uvicorn, the demo model, the demo: source):
rebuild jobs with progress over SSE, activation through the model store, cancel, every refusal, auth,
the stale flag in the list and in /metrics."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fieldtui.protocol import EngineList, EngineRebuildResult, Job, ModelList
from tests.storeclient import wait_job
from tests.test_api_events import sse_events

SOURCE = "demo:?fps=20&size=320x240"
FAST = {"calibration_frames": 8, "accuracy_frames": 8}


@pytest.fixture
def agent(inproc_agent, tmp_path):
    """The demo model (real convolutions to quantise) with a short probation."""
    home = tmp_path / "engines-home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 1.5\nprobation_min_frames = 5\n")
    return inproc_agent(home, source=SOURCE, model=None)


class JobEvents:
    """SSE ``job`` events in a thread, from before the job is submitted until it finishes."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.events: list[dict] = []
        self.open = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        # samples (~2.5 Hz) keep the stream moving, so the reader sees ``stop`` soon after it is set
        with (
            self.agent.client(timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", "/v1/events", params={"events": "job,sample"}) as response,
        ):
            self.open.set()
            for _, name, data in sse_events(response):
                if name == "job":
                    self.events.append(data)
                if self.stop.is_set():
                    return

    def __enter__(self) -> JobEvents:
        self.thread.start()
        assert self.open.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _engines(client: httpx.Client) -> EngineList:
    response = client.get("/v1/engines")
    assert response.status_code == 200, response.text
    return EngineList.model_validate(response.json())


def _stale_metric(agent) -> dict[tuple[str, str], float]:
    body = httpx.get(f"{agent.url}/metrics", timeout=10).text
    return {
        (s.labels["key"], s.labels["runtime"]): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
        if s.name == "fieldtui_agent_engine_stale"
    }


def _rebuild(client: httpx.Client, **body) -> Job:
    response = client.post("/v1/engines/rebuild", json=body)
    assert response.status_code == 202, response.text
    return Job.model_validate(response.json())


def test_rebuild_job_builds_an_int8_engine_with_progress_and_lists_it(agent):
    with agent.client() as c, JobEvents(agent) as events:
        job = _rebuild(c, precision="int8", **FAST)
        assert job.kind == "engine_rebuild" and job.state in ("queued", "running")
        done = wait_job(c, job.id, timeout=120)
        deadline = time.monotonic() + 10
        while not any(e["id"] == job.id and e["state"] == "succeeded" for e in events.events):
            assert time.monotonic() < deadline, "no SSE event for the finished job"
            time.sleep(0.05)
    assert done.state == "succeeded", done.error
    result = EngineRebuildResult.model_validate(done.result)
    stages = [e["stage"] for e in events.events if e["id"] == job.id and e["state"] == "running"]
    assert any(s and s.startswith("calibrating on 8 frames") for s in stages), stages
    assert any(s and s.startswith("measuring against FP32") for s in stages), stages
    assert all(not s or s.endswith(" s)") or "capturing" in s for s in stages), stages  # elapsed time
    assert result.size < result.source_size and result.calibration_frames == 8
    assert result.agreement_frames == 8 and 0 < result.agreement_f1 <= 1
    assert any("from the live source" in line for line in result.log)
    assert not done.params.get("activate")

    with agent.client() as c:
        listed = _engines(c)
        (engine,) = listed.engines
        assert engine.key == result.engine.key and not engine.stale
        runtimes = {r.runtime: r for r in listed.runtimes}
        assert runtimes["onnxruntime"].can_build
        assert not runtimes["hailo"].can_build and "off-device" in runtimes["hailo"].build_note
        assert _stale_metric(agent) == {(engine.key, "onnxruntime"): 0.0}
        # the device kept serving its FP32 model meanwhile
        assert c.get("/v1/status").json()["model"]["path"].endswith("demo.onnx")

        # a runtime upgrade later: the fingerprint no longer matches, the list and the metric say so
        fp_file = agent.home / "engines" / engine.key / "fingerprint.json"
        data = json.loads(fp_file.read_text())
        data["runtime_version"] = "1.2.0"
        fp_file.write_text(json.dumps(data))
        (stale,) = _engines(c).engines
        assert stale.stale and stale.stale_reason.startswith("built with ONNX Runtime 1.2 for ")
        assert stale.stale_reason.endswith(": rebuild it")
        assert _stale_metric(agent) == {(engine.key, "onnxruntime"): 1.0}


def test_benchmarks_measure_int8_from_the_built_engine(agent):
    with agent.client() as c:
        bench = {"precisions": ["int8"], "iterations": 4, "warmup": 1, "accuracy_frames": 2}
        before = wait_job(c, c.post("/v1/benchmarks", json=bench).json()["id"], timeout=120)
        (skipped,) = before.result["results"]
        assert skipped["status"] == "skipped" and "engines rebuild --precision int8" in skipped["reason"]
        assert wait_job(c, _rebuild(c, **FAST).id, timeout=120).state == "succeeded"
        after = wait_job(c, c.post("/v1/benchmarks", json=bench).json()["id"], timeout=120)
        (measured,) = after.result["results"]
        assert measured["status"] == "ok", measured["reason"]
        assert measured["latency"]["p50_ms"] > 0 and 0 <= measured["agreement_f1"] <= 1


def test_rebuild_with_activate_adds_the_engine_to_the_store_and_activates_it(agent):
    with agent.client() as c:
        done = wait_job(c, _rebuild(c, precision="fp32", accuracy_frames=4, activate=True).id, timeout=120)
        assert done.state == "succeeded", done.error
        result = EngineRebuildResult.model_validate(done.result)
        version = result.model_version
        assert version.startswith("model-onnxruntime-fp32-") and result.activation_job
        activation = wait_job(c, result.activation_job, timeout=120)
        assert activation.state == "succeeded", activation.error
        models = ModelList.model_validate(c.get("/v1/models").json())
        assert models.current == version
        (stored,) = [v for v in models.versions if v.version == version]
        assert stored.serving and stored.current
        assert result.engine.key in stored.manifest.source
        status = c.get("/v1/status").json()
        assert status["model"]["version"] == version
        (engine,) = _engines(c).engines
        assert engine.model_version == version
        # with the engine serving, the next rebuild still starts from the FP32 model it was built from
        again = wait_job(c, _rebuild(c, **FAST).id, timeout=120)
        assert again.state == "succeeded", again.error
        rebuilt = EngineRebuildResult.model_validate(again.result)
        assert rebuilt.engine.fingerprint.source_sha256 == engine.fingerprint.source_sha256
        assert "from demo.onnx" in rebuilt.log[1]


def test_cancel_mid_build_leaves_nothing_in_engines_or_staging(agent):
    with agent.client() as c:
        job = _rebuild(c, calibration_frames=48, accuracy_frames=8)
        # a second rebuild meanwhile is refused: the two would time each other
        second = c.post("/v1/engines/rebuild", json=FAST)
        assert second.status_code == 409 and "already running" in second.json()["detail"]
        deadline = time.monotonic() + 120
        while True:
            current = Job.model_validate(c.get(f"/v1/jobs/{job.id}").json())
            if current.stage and current.stage.startswith("calibrating"):
                break
            assert current.state in ("queued", "running"), current.error
            assert time.monotonic() < deadline, "calibration never started"
            time.sleep(0.02)
        assert c.post(f"/v1/jobs/{job.id}/cancel").status_code == 200
        done = wait_job(c, job.id, timeout=60)
        assert done.state == "cancelled"
        engines = agent.home / "engines"
        assert [p.name for p in engines.iterdir() if p.name != ".staging"] == []
        assert not (engines / ".staging").exists() or list((engines / ".staging").iterdir()) == []
        assert _engines(c).engines == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"backend": "tflite"}, "unknown backend 'tflite'"),
        ({"version": "v9"}, "no model version 'v9' in this device's store"),
        ({"calibration_dir": "/nonexistent/frames"}, "is not a folder on the device"),
        ({"backend": "hailo"}, "compiled off-device with Hailo's Dataflow Compiler"),
        ({"precision": "fp16"}, "fp16 on onnxruntime"),
        ({"precision": "int4"}, "precision"),
        ({"calibration_frames": 0}, "calibration_frames"),
    ],
)
def test_bad_requests_are_422_with_why_and_change_nothing(agent, body, detail):
    with agent.client() as c:
        response = c.post("/v1/engines/rebuild", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"]
        assert c.get("/v1/jobs", params={"kind": "engine_rebuild"}).json()["jobs"] == []
        assert _engines(c).engines == []
    engines = agent.home / "engines"
    assert not engines.exists() or [p.name for p in engines.iterdir() if p.name != ".staging"] == []


def test_engine_routes_need_the_token(agent):
    for method, path in (("GET", "/v1/engines"), ("POST", "/v1/engines/rebuild")):
        response = httpx.request(method, f"{agent.url}{path}", json={}, timeout=10)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
        wrong = httpx.request(method, f"{agent.url}{path}", json={}, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
    assert not (agent.home / "engines").exists() or _no_engines(agent)


def _no_engines(agent) -> bool:
    return [p for p in (agent.home / "engines").iterdir() if p.name != ".staging"] == []


def test_a_leftover_staging_folder_is_removed_at_start(inproc_agent, tmp_path):
    home = tmp_path / "leftover-home"
    leftover = home / "engines" / ".staging" / "onnxruntime-int8-abc.1234.part"
    leftover.mkdir(parents=True)
    (leftover / "model.onnx").write_bytes(b"half")
    agent = inproc_agent(home, source=SOURCE)
    assert not leftover.exists()
    with agent.client() as c:
        assert _engines(c).engines == []
    shutil.rmtree(home / "engines")


def test_no_live_frames_fails_the_job_saying_what_to_do(inproc_agent, tmp_path):
    agent = inproc_agent(tmp_path / "no-frames-home", source=str(tmp_path / "missing.mp4"), model=None)
    with agent.client() as c:
        done = wait_job(c, _rebuild(c, **FAST).id, timeout=60)
        assert done.state == "failed"
        assert done.error.startswith("no frames from the live source to calibrate on")
        assert "calibration_dir" in done.error
        assert _engines(c).engines == []
