"""``fieldtui bench HOST --ssh``: the console -> asyncssh -> the real SSH test server -> the real
``fieldtui-agent bench --json``, while a real agent serves from the same home (and holds its store lock)."""

from __future__ import annotations

import pytest

from fieldtui.link.fallback import bench_flags
from fieldtui.protocol import BenchmarkList, BenchmarkRequest, BenchmarkRun
from tests import storemodels as sm
from tests.test_ssh import console, device_home, fail_line, ok_json, run, ssh_dir, ssh_server  # noqa: F401


def test_bench_over_ssh_measures_the_current_model_beside_the_serving_agent(
    capsys,
    console,  # noqa: F811
    ssh_dir,  # noqa: F811
    start_agent,
    device_home,  # noqa: F811
    tmp_path,
):
    agent = start_agent(device_home)
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    v1 = sm.detector(tmp_path / "v1.onnx", seed=3)
    ok_json(capsys, "push", "dock-1", str(v1), "--version", "v1", "--activate", "--ssh", "--json")

    flags = ("--ssh", "--json", "--iterations", "5", "--warmup", "1", "--threads", "1")
    bench = BenchmarkRun.model_validate(ok_json(capsys, "bench", "dock-1", *flags))
    assert bench.model == "v1" and bench.model_sha256 == sm.sha256(v1)
    assert bench.results, "a run without results"
    ok = [r for r in bench.results if r.status == "ok"]
    assert ok and ok[0].config.backend == "onnxruntime" and ok[0].config.threads == 1
    assert ok[0].iterations == 5 and ok[0].latency is not None and ok[0].fps
    # Saved to the device's history, which the serving agent's API reads.
    with agent.client() as http:
        listing = BenchmarkList.model_validate_json(http.get("/v1/benchmarks").content)
    assert bench.id in [r.id for r in listing.runs]

    code, out, err = run(capsys, "bench", "dock-1", "--ssh", "--iterations", "5", "--warmup", "1")
    assert code == 0, err
    assert "onnxruntime" in out and "v1" in out  # the table, with the model it measured


def test_bench_over_ssh_refuses_what_the_agent_cli_cannot_run(capsys, console, ssh_dir):  # noqa: F811
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    line = fail_line(capsys, "bench", "dock-1", "--ssh", "--mode", "pipeline")
    assert line == (
        "fieldtui: a pipeline-mode benchmark needs the agent's API; over SSH (dock-1) only model and cameras "
        "mode run"
    )


def test_bench_flags_map_every_option():
    request = BenchmarkRequest(
        backends=["onnxruntime", "tensorrt"],
        precisions=["fp32", "fp16"],
        threads=[1, 4],
        batch_sizes=[2],
        iterations=7,
        warmup=0,
    )
    assert bench_flags(request, "h") == [
        *("--backend", "onnxruntime", "--backend", "tensorrt", "--precision", "fp32", "--precision", "fp16"),
        *("--threads", "1", "--threads", "4", "--batch", "2", "--iterations", "7", "--warmup", "0"),
    ]
    assert "--threads" not in bench_flags(BenchmarkRequest(), "h")  # [None]: the runtime's default
    with pytest.raises(Exception, match="cannot mix"):
        bench_flags(BenchmarkRequest(threads=[None, 2]), "h")
    cameras = BenchmarkRequest(mode="cameras", cameras=4, camera_fps=15.0, duration_s=3.0, threads=[2])
    assert bench_flags(cameras, "h") == [
        *(
            "--cameras",
            "4",
            "--camera-fps",
            "15",
            "--duration",
            "3",
            "--backend",
            "onnxruntime",
            "--threads",
            "2",
        )
    ]
