"""Benchmarks that do not cry wolf: a change is "better" or "worse" only beyond the runs' own spread
(fieldtui/protocol/benchnoise.py), judged once for the agent, ``fieldtui bench``, the TUI and the report.

The per-round figures below are real: printed by ``bench/benchnoise.py --rounds`` (demo model, ONNX
Runtime FP32, 80 calls in 8 rounds) on a shared 2-core machine under load; the last test runs two
benchmarks on a real agent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.bench.history import compare
from agent.bench.runner import model_for_precision
from agent.inference.backends import get_backend
from fieldtui.protocol import BenchmarkConfig, BenchmarkResult, BenchmarkRun, Comparison, LatencyStats
from fieldtui.protocol.bench import benchmark_table, comparison_text, verdict_of, with_console_hint
from fieldtui.protocol.benchnoise import decide, mann_whitney_p
from tests.storeclient import wait_job

# (p50 ms, [(round p50 ms, round fastest call ms), ...]) of runs measured one after the other
SAME_1 = (
    (
        17.97,
        [
            (25.13, 14.8),
            (27.922, 9.436),
            (15.391, 9.245),
            (14.664, 12.115),
            (15.773, 12.005),
            (17.027, 11.137),
            (21.859, 9.346),
            (15.104, 9.447),
        ],
    ),  # fmt: skip
    (
        22.93,
        [
            (17.818, 5.888),
            (22.651, 13.419),
            (19.384, 16.745),
            (20.33, 12.792),
            (21.756, 13.239),
            (27.475, 11.508),
            (23.601, 8.036),
            (25.016, 13.183),
        ],
    ),  # fmt: skip
)
SAME_2 = (
    (
        17.42,
        [
            (22.042, 10.191),
            (21.971, 15.025),
            (20.05, 6.233),
            (20.438, 11.629),
            (16.753, 8.791),
            (14.032, 12.344),
            (17.323, 12.94),
            (21.258, 8.731),
        ],
    ),  # fmt: skip
    (
        15.57,
        [
            (16.833, 12.646),
            (16.439, 8.055),
            (19.938, 8.873),
            (17.299, 11.476),
            (18.712, 9.378),
            (14.688, 8.573),
            (12.834, 9.262),
            (13.503, 8.849),
        ],
    ),  # fmt: skip
)
TWICE_THE_WORK = (  # the second run infers every frame twice: really about 2x slower
    (
        16.67,
        [
            (12.249, 8.444),
            (14.037, 10.375),
            (18.966, 4.887),
            (17.259, 4.352),
            (17.372, 13.016),
            (14.954, 12.144),
            (16.975, 9.025),
            (18.585, 12.764),
        ],
    ),  # fmt: skip
    (
        32.36,
        [
            (32.843, 21.701),
            (34.859, 30.365),
            (30.307, 24.444),
            (30.076, 23.79),
            (32.991, 24.256),
            (24.856, 14.721),
            (32.613, 25.659),
            (39.163, 30.616),
        ],
    ),  # fmt: skip
)


def _result(run: tuple[float, list[tuple[float, float]]]) -> BenchmarkResult:
    p50, rounds = run
    return BenchmarkResult(
        config=BenchmarkConfig(backend="onnxruntime"),
        status="ok",
        iterations=80,
        latency=LatencyStats(p50_ms=p50),
        fps=round(1000.0 / p50, 2),
        rounds=[{"p50_ms": p, "min_ms": m} for p, m in rounds],
    )


def _compare(pair) -> Comparison:
    old, new = pair
    return compare(_result(new), _result(old), previous_id=1, created=time.time() - 30)


def test_mann_whitney_matches_the_exact_distribution():
    # references: scipy.stats.mannwhitneyu(a, b, method="exact") two-sided
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert mann_whitney_p([1, 3, 5, 7], [2, 4, 6, 8]) == pytest.approx(0.6857, abs=1e-4)
    assert mann_whitney_p([2, 2, 2], [2, 2, 2]) == 1.0
    assert mann_whitney_p([], [1.0]) == 1.0
    big = list(range(30))
    assert mann_whitney_p(big, [x + 100 for x in big]) < 1e-6  # the normal approximation past 40 rounds


@pytest.mark.parametrize("pair", [SAME_1, SAME_2], ids=["same-1", "same-2"])
def test_identical_runs_are_the_same_within_noise(pair):
    cmp = _compare(pair)
    assert cmp.verdict == "same" and verdict_of(cmp) == "same"
    assert cmp.noise_pct is not None and abs(cmp.p50_change_pct) <= cmp.noise_pct
    assert comparison_text(cmp).startswith(f"same within noise (±{cmp.noise_pct:.1f}%): p50 ")
    # the rule this replaces called both a verdict (FPS moved by more than 2 %)
    assert abs(cmp.fps_change_pct) > 2.0


def test_a_run_twice_as_slow_is_worse():
    cmp = _compare(TWICE_THE_WORK)
    assert cmp.verdict == "worse" and verdict_of(cmp) == "worse"
    assert cmp.p50_change_pct == pytest.approx(94.1, abs=0.1) and cmp.p_value < 0.05
    assert (
        comparison_text(cmp)
        == f"worse: p50 +94.1%, fps {cmp.fps_change_pct:+.1f}% (noise ±{cmp.noise_pct:.1f}%)"
    )
    back = compare(_result(TWICE_THE_WORK[0]), _result(TWICE_THE_WORK[1]), previous_id=1, created=0.0)
    assert back.verdict == "better"


def test_typical_calls_slower_but_the_fastest_unchanged_is_a_busier_device_not_a_verdict():
    assert decide(60.0, 10.0, 0.001, best_change_pct=1.5) == "same"
    assert decide(60.0, 10.0, 0.001, best_change_pct=55.0) == "worse"
    assert decide(60.0, 10.0, 0.2, best_change_pct=55.0) == "same"  # the rounds overlap
    cmp = Comparison(
        previous_id=1,
        previous_created=0,
        p50_change_pct=60.0,
        fps_change_pct=-37.0,
        verdict="same",
        noise_pct=10.0,
        p_value=0.001,
        best_change_pct=1.5,
    )
    assert comparison_text(cmp).endswith("fastest call +1.5%: the device was busier or idler")


def test_a_comparison_stored_with_the_old_two_percent_rule_is_judged_again():
    """An older agent stored "worse" for +5 %; without rounds, the fallback noise floor decides."""
    old = Comparison(
        previous_id=1, previous_created=0, p50_change_pct=5.0, fps_change_pct=-4.8, verdict="worse"
    )
    assert verdict_of(old) == "same" and comparison_text(old).startswith("same within noise (±15.0%)")


def test_a_skipped_int8_row_says_how_to_build_it_from_the_console():
    _, why = model_for_precision(get_backend("onnxruntime"), Path("model.onnx"), "int8")
    assert "fieldtui-agent engines rebuild --precision int8" in why  # the on-device command stays
    said = with_console_hint(why, "dock-1")
    assert said.endswith("from the console: `fieldtui rebuild dock-1 --precision int8`")
    stale = "int8 on onnxruntime: engine k is stale (x); `fieldtui-agent engines rebuild --backend onnxruntime --precision int8`"
    assert with_console_hint(stale, "d").endswith(
        "`fieldtui rebuild d --backend onnxruntime --precision int8`"
    )
    assert with_console_hint("batch 2 cannot run", "d") == "batch 2 cannot run"
    run = BenchmarkRun(
        id="r",
        created=0,
        device_id="d",
        model_sha256="0" * 64,
        model="m",
        results=[
            BenchmarkResult(
                config=BenchmarkConfig(backend="onnxruntime", precision="int8"), status="skipped", reason=why
            )
        ],
    )
    assert "fieldtui rebuild dock-1 --precision int8" in benchmark_table(run, host="dock-1")[-1]


def test_two_identical_runs_on_a_real_agent_are_the_same_within_noise(agent_inproc):
    body = {"threads": [1], "iterations": 80, "warmup": 5, "accuracy_frames": 0}
    with agent_inproc.client() as client:
        runs = []
        for _ in range(2):
            answer = client.post("/v1/benchmarks", json=body)
            assert answer.status_code == 202, answer.text
            job = wait_job(client, answer.json()["id"], timeout=120)
            assert job.state == "succeeded", job.error
            runs.append(BenchmarkRun.model_validate(job.result))
    (first,), (second,) = runs[0].results, runs[1].results
    assert len(first.rounds) == len(second.rounds) == 8 and all(r.min_ms for r in second.rounds)
    cmp = second.comparison
    assert cmp is not None and cmp.previous_id == first.id and cmp.noise_pct is not None
    assert cmp.verdict == "same", comparison_text(cmp)
    assert comparison_text(cmp).startswith("same within noise (±")
