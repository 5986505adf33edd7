"""Benchmarks: real onnxruntime on tiny generated models, over the API of a real agent and the CLIs.

Behaviour only (figures are sane, stored, compared, skipped with a reason); no timing assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.bench.frames import scene_frames
from agent.bench.runner import run_model_benchmarks
from agent.inference.agreement import agreement, f1_score
from agent.inference.detector import Detector
from fieldtui.protocol import BenchmarkRequest, BenchmarkRun, Job
from tests import modelgen as mg

NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
DETS = [(64, 64, 24, 24, 1, 0.9), (30, 30, 12, 12, 0, 0.6), (100, 90, 20, 16, 2, 0.8)]


def _model(path: Path, dets: list, *, batch: int | str = 1) -> Path:
    out = mg.yolov8_output(dets, nc=4, anchors=336)
    return mg.save_model(
        path, [out], input_shape=(batch, 3, 128, 128), metadata=mg.ultralytics_metadata(NAMES, imgsz=128)
    )


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return scene_frames(4, 160, 120)


def _sane(result) -> None:
    assert result.status == "ok", result.reason
    lat = result.latency
    assert 0 < lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
    assert result.fps > 0
    assert result.system.cpu_percent > 0
    assert result.system.rss_mb > 0 and result.system.hwm_mb >= result.system.rss_mb
    assert result.stages_ms.infer > 0 and result.stages_ms.preprocess > 0
    # the same FP32 model at another thread count or batch is compared, not assumed; the reference row
    # itself carries no F1
    assert (result.reference and result.agreement_f1 is None) or (
        result.agreement_f1 == 1.0 and result.agreement_frames > 0
    )


def test_agreement_is_one_for_the_same_model_and_lower_for_one_that_sees_less(tmp_path, frames):
    full = _model(tmp_path / "full.onnx", DETS)
    fewer = _model(tmp_path / "fewer.onnx", [d for d in DETS if d[4] != 2])  # never finds triangles
    with Detector.load(full) as a, Detector.load(full) as b, Detector.load(fewer) as c:
        assert agreement(a, b, frames) == 1.0
        seen_less = agreement(a, c, frames)
    assert 0 < seen_less < 1
    assert seen_less == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))  # 2 matched, 1 missed per frame


def test_agreement_is_class_aware(tmp_path, frames):
    relabelled = [(*d[:4], (d[4] + 1) % 4, d[5]) for d in DETS]  # same boxes, other classes
    with (
        Detector.load(_model(tmp_path / "a.onnx", DETS)) as a,
        Detector.load(_model(tmp_path / "b.onnx", relabelled)) as b,
    ):
        pairs = [(a.detect(f), b.detect(f)) for f in frames]
    assert f1_score(pairs) == 0.0


def test_batches_give_per_frame_latency_and_unsupported_ones_are_skipped(tmp_path, frames):
    dynamic = _model(tmp_path / "dyn.onnx", DETS, batch="batch")
    static = _model(tmp_path / "static.onnx", DETS)
    request = BenchmarkRequest(
        precisions=["fp32", "int8"], batch_sizes=[1, 2], threads=[1], iterations=6, warmup=1
    )
    results = run_model_benchmarks(dynamic, request, frames)
    by = {(r.config.precision, r.config.batch): r for r in results}
    assert set(by) == {("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)}
    for batch in (1, 2):
        ok = by[("fp32", batch)]
        _sane(ok)
        assert ok.config.threads == 1
        assert ok.per_frame_ms == pytest.approx(ok.latency.p50_ms / batch, abs=1e-3)
    for batch in (1, 2):
        skipped = by[("int8", batch)]
        assert skipped.status == "skipped" and skipped.latency is None and skipped.fps is None
        assert "not available for this backend/model yet" in skipped.reason

    (one, two) = run_model_benchmarks(static, request.model_copy(update={"precisions": ["fp32"]}), frames)
    _sane(one)
    assert two.status == "skipped" and two.config.batch == 2
    assert "batch dimension is fixed at 1" in two.reason and two.fps is None


def _wait(client, job: Job, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = Job.model_validate(client.get(f"/v1/jobs/{job.id}").json())
        if job.state in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_benchmark_job_results_are_stored_and_compared_with_the_previous_run(agent_inproc):
    body = {"threads": [1], "iterations": 5, "warmup": 1, "accuracy_frames": 2}
    with agent_inproc.client() as client:
        runs = []
        for _ in range(2):
            answer = client.post("/v1/benchmarks", json=body)
            assert answer.status_code == 202, answer.text
            job = _wait(client, Job.model_validate(answer.json()))
            assert job.state == "succeeded", job.error
            runs.append(BenchmarkRun.model_validate(job.result))
        first, second = runs
        (r1,), (r2,) = first.results, second.results
        _sane(r1)
        _sane(r2)
        assert first.model_sha256 == agent_inproc.service.pipeline.detector.sha256
        assert first.device_id == agent_inproc.service.device_id
        assert r1.comparison is None
        assert r2.comparison is not None and r2.comparison.previous_id == r1.id
        assert r2.comparison.verdict in ("better", "worse", "same") and len(r2.rounds) == 1  # 5 calls
        expected = round(100 * (r2.fps - r1.fps) / r1.fps, 1)
        assert r2.comparison.fps_change_pct == pytest.approx(expected, abs=0.11)

        history = client.get("/v1/benchmarks").json()
        assert [run["id"] for run in history["runs"]] == [second.id, first.id]
        one = client.get(f"/v1/benchmarks/{first.id}")
        assert BenchmarkRun.model_validate(one.json()) == first
        missing = client.get("/v1/benchmarks/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")


def test_pipeline_mode_watches_the_live_pipeline_without_stopping_it(agent_inproc):
    with agent_inproc.client() as client:
        answer = client.post("/v1/benchmarks", json={"mode": "pipeline", "duration_s": 1.5})
        job = _wait(client, Job.model_validate(answer.json()))
        assert job.state == "succeeded", job.error
        (result,) = BenchmarkRun.model_validate(job.result).results
        assert result.status == "ok", result.reason
        assert result.config.mode == "pipeline" and result.fps > 0 and result.iterations > 0
        assert result.latency.p50_ms > 0 and 0 <= result.drop_rate <= 1
        assert client.get("/v1/status").json()["state"] == "running"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"batch_sizes": [0]}, "batch_sizes"),
        ({"precisions": ["fp8"]}, "precisions"),
        ({"mode": "fast"}, "mode"),
        ({"iterations": 0}, "iterations"),
        ({"threads": [-2]}, "threads"),
        ({"backends": ["tpu9000"]}, "backends"),
    ],
)
def test_a_bad_request_is_a_422_problem(agent_inproc, body, field):
    with agent_inproc.client() as client:
        answer = client.post("/v1/benchmarks", json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.json()["detail"]
    assert agent_inproc.service.benchmarks.list().runs == []  # nothing ran, nothing stored


def test_a_second_benchmark_while_one_runs_is_refused(agent_inproc):
    with agent_inproc.client() as client:
        first = Job.model_validate(client.post("/v1/benchmarks", json={"iterations": 10000}).json())
        try:
            again = client.post("/v1/benchmarks", json={"iterations": 1})
            assert again.status_code == 409
            assert "already running" in again.json()["detail"]
        finally:
            client.post(f"/v1/jobs/{first.id}/cancel")
        assert _wait(client, first).state == "cancelled"
        later = client.post("/v1/benchmarks", json={"iterations": 2, "warmup": 0})
        assert later.status_code == 202
        assert _wait(client, Job.model_validate(later.json())).state == "succeeded"
    assert json.loads(json.dumps(first.params))["iterations"] == 10000


REPO = Path(__file__).resolve().parent.parent


def _cli(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full = {k: v for k, v in full.items() if not k.startswith("FIELDTUI_AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=full, cwd=REPO, timeout=120
    )


def test_agent_cli_bench_prints_the_run_and_compares_with_the_last(tmp_path, tiny_model):
    home = str(tmp_path / "home")
    flags = ("bench", "--home", home, "--model", str(tiny_model), "--iterations", "4", "--warmup", "1")
    first = _cli("agent", *flags, "--batch", "1", "--batch", "2", "--json")
    assert first.returncode == 0, first.stderr
    run = BenchmarkRun.model_validate_json(first.stdout)
    ok, skipped = run.results
    _sane(ok)
    assert skipped.status == "skipped" and "batch dimension" in skipped.reason

    second = _cli("agent", *flags)
    assert second.returncode == 0, second.stderr
    row = next(line for line in second.stdout.splitlines() if line.startswith("model    onnxruntime"))
    assert "p50 " in row and ("same within noise (±" in row or "(noise ±" in row), second.stdout

    bad = _cli("agent", "bench", "--home", home, "--model", str(tiny_model), "--batch", "0")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "fieldtui-agent: bad benchmark option batch_sizes.0: Input should be greater than or equal to 1"
    ]


def test_console_bench_runs_the_job_on_the_device(agent_inproc, tmp_path):
    console = {"FIELDTUI_CONFIG_DIR": str(tmp_path / "console")}
    added = _cli(
        "fieldtui", "add", agent_inproc.url, "--token", agent_inproc.token, "--name", "cam", env=console
    )
    assert added.returncode == 0, added.stderr
    result = _cli("fieldtui", "bench", "cam", "--iterations", "3", "--threads", "1", "--json", env=console)
    assert result.returncode == 0, result.stderr
    run = BenchmarkRun.model_validate_json(result.stdout)
    _sane(run.results[0])
    with agent_inproc.client() as client:
        assert client.get(f"/v1/benchmarks/{run.id}").json()["results"][0]["id"] == run.results[0].id

    table = _cli("fieldtui", "bench", "cam", "--iterations", "3", "--threads", "1", env=console)
    assert table.returncode == 0, table.stderr
    assert "vs previous" in table.stdout and "1.00" in table.stdout


def test_a_reduced_precision_from_a_registered_backend_reports_its_agreement(tmp_path, frames, monkeypatch):
    """The hook later engines use: a backend whose int8 model sees less gets F1 < 1 beside its speed."""
    from agent.inference import backends
    from agent.inference.backends.onnxruntime import OnnxRuntimeBackend

    full = _model(tmp_path / "full.onnx", DETS)
    fewer = _model(tmp_path / "int8.onnx", [d for d in DETS if d[4] != 2])

    class Quantised(OnnxRuntimeBackend):
        key = "quantised-test"

        @classmethod
        def model_for_precision(cls, path, precision):
            return {"fp32": (path, None), "int8": (fewer, None)}.get(precision, (None, "no fp16 here"))

    monkeypatch.setitem(backends.BACKENDS, Quantised.key, Quantised)
    request = BenchmarkRequest(
        backends=[Quantised.key],
        precisions=["fp32", "int8", "fp16"],
        iterations=3,
        warmup=0,
        accuracy_frames=3,
    )
    fp32, int8, fp16 = run_model_benchmarks(full, request, frames)
    _sane(fp32)
    assert int8.status == "ok" and int8.agreement_frames == 3
    assert int8.agreement_f1 == pytest.approx(4 / 5, abs=1e-4)
    assert fp16.status == "skipped" and fp16.reason == "no fp16 here"


def test_device_readings_come_from_the_files_that_exist(tmp_path):
    from agent.bench import probe as bench_probe

    for i, millideg in enumerate(("41000", "57500", "oops")):
        zone = tmp_path / "thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(millideg + "\n")
    assert bench_probe.temperature_c(str(tmp_path / "thermal" / "thermal_zone*" / "temp")) == 57.5
    assert bench_probe.temperature_c(str(tmp_path / "none" / "*")) is None

    for cpu, cur in (("cpu0", 600000), ("cpu1", 1200000)):
        freq = tmp_path / "cpu" / cpu / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_cur_freq").write_text(f"{cur}\n")
        (freq / "cpuinfo_max_freq").write_text("1500000\n")
    throttled, detail = bench_probe._cpufreq(str(tmp_path / "cpu"))
    assert throttled is True and detail == "cpufreq 1.20/1.50 GHz"
    assert bench_probe._cpufreq(str(tmp_path / "nothing")) is None

    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    assert bench_probe.memory_mb(status) == (100.0, 200.0)
    assert bench_probe.memory_mb(tmp_path / "missing") == (None, None)


def test_a_known_backend_this_device_cannot_run_is_skipped_with_why(tmp_path, frames):
    request = BenchmarkRequest(backends=["tensorrt", "onnxruntime"], iterations=2, warmup=0)
    trt, ort = run_model_benchmarks(_model(tmp_path / "m.onnx", DETS), request, frames)
    assert trt.status == "skipped" and "tensorrt" in trt.reason and trt.fps is None
    assert ort.status == "ok"
