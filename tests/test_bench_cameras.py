"""The multi-camera benchmark (agent/bench/cameras.py) as a ``POST /v1/benchmarks`` job of a real agent:
synthetic demo cameras share a demo model built for a fixed batch of 3, batching on and off, total FPS
and each camera's frame latency; the console's ``fieldtui bench HOST --cameras N`` asks for it."""

from __future__ import annotations

import pytest

from fieldtui.cli.bench import _request
from fieldtui.cli.main import build_parser
from fieldtui.protocol import BenchmarkRun, Job, benchmark_table
from tests.test_bench import _wait


def test_multi_camera_benchmark_measures_batching_on_and_off(inproc_agent, demo_batch3_model):
    agent = inproc_agent(model=demo_batch3_model, source="demo:?fps=1&size=160x120")
    body = {"mode": "cameras", "cameras": 2, "camera_fps": 10.0, "duration_s": 0.7, "threads": [1]}
    with agent.client() as client:
        answer = client.post("/v1/benchmarks", json=body)
        assert answer.status_code == 202, answer.text
        job = _wait(client, Job.model_validate(answer.json()))
        assert job.state == "succeeded", job.error
        run = BenchmarkRun.model_validate(job.result)
        assert client.get(f"/v1/benchmarks/{run.id}").status_code == 200  # kept in the history
        assert client.get("/v1/status").json()["state"] == "running"  # the live pipeline ran on
    on, off = run.results
    assert (on.config.mode, on.config.cameras, on.config.batch) == ("cameras", 2, 2)
    assert (off.config.mode, off.config.cameras, off.config.batch) == ("cameras", 2, 1)
    for row in (on, off):
        assert row.status == "ok", row.reason
        assert [c.name for c in row.per_camera] == ["cam1", "cam2"]
        assert row.fps == pytest.approx(sum(c.fps for c in row.per_camera), rel=0.02)
        assert all(c.fps > 0 and 0 < c.latency.p50_ms <= c.latency.p95_ms for c in row.per_camera)
        assert row.iterations > 0 and row.system.cpu_percent > 0
    text = "\n".join(benchmark_table(run))
    assert "2 cameras, batching on (up to 2 a call): total" in text
    assert "2 cameras, batching off (cameras take turns): total" in text
    assert "cam2" in text and "frame latency p50" in text


def test_a_model_of_batch_one_has_no_batched_row_and_says_why(inproc_agent):
    agent = inproc_agent(model=None, source="demo:?fps=1&size=160x120")  # the embedded demo model: batch 1
    body = {"mode": "cameras", "cameras": 2, "camera_fps": 5.0, "duration_s": 0.5, "threads": [1]}
    with agent.client() as client:
        job = _wait(client, Job.model_validate(client.post("/v1/benchmarks", json=body).json()))
    on, off = BenchmarkRun.model_validate(job.result).results
    assert on.status == "skipped" and "takes one frame per call, so cameras take turns" in on.reason
    assert off.status == "ok" and len(off.per_camera) == 2


def test_console_bench_cameras_flag_asks_for_the_multi_camera_benchmark():
    args = build_parser().parse_args(["bench", "dock", "--cameras", "4", "--camera-fps", "15"])
    request = _request(args)
    assert (request.mode, request.cameras, request.camera_fps) == ("cameras", 4, 15.0)


def test_the_agent_cli_runs_it_too_for_the_ssh_path(tmp_path, capsys, demo_batch3_model):
    """``fieldtui-agent bench --cameras N`` (what ``fieldtui bench HOST --cameras N --ssh`` runs, with
    the flags fieldtui/link/ssh.py's bench_flags gives): the same rows, saved to the device's history."""
    from agent.cli.main import build_parser as agent_parser

    args = ["bench", "--home", str(tmp_path / "home"), "--model", str(demo_batch3_model), "--json"]
    args += ["--cameras", "2", "--camera-fps", "8", "--duration", "0.5", "--threads", "1"]
    parsed = agent_parser().parse_args(args)  # as `fieldtui-agent` parses them, in this process
    assert parsed.func(parsed) == 0
    run = BenchmarkRun.model_validate_json(capsys.readouterr().out)
    assert [(r.config.mode, r.config.batch, r.status) for r in run.results] == [
        ("cameras", 2, "ok"),
        ("cameras", 1, "ok"),
    ]
    assert all(len(r.per_camera) == 2 for r in run.results)
