"""The noise of a benchmark on this machine: identical runs, side by side, and what each rule says.

    .venv/bin/python bench/benchnoise.py [--pairs 5] [--gap 5] [--iterations 80] [--slower]

Runs the demo model (agent/assets/demo.onnx, ONNX Runtime FP32, batch 1) as ``fieldtui bench`` does,
``--pairs`` times two identical runs ``--gap`` seconds apart, and prints for each pair the p50 change,
the runs' own spread (half the range of their per-round p50s), the Mann-Whitney p-value of the rounds,
the fastest call's change, the verdict of fieldtui/protocol/benchnoise.py and what the former fixed 2 % rule said. The last line
is the measured noise between identical runs (the largest |p50 change|): the figure behind
``FALLBACK_NOISE_PCT``. ``--slower`` adds a pair whose second run does twice the inference work, to
show the same rules do see a real change.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.bench.frames import scene_frames  # noqa: E402
from agent.bench.runner import measure  # noqa: E402
from agent.inference.detector import Detector  # noqa: E402
from fieldtui.protocol import BenchmarkResult  # noqa: E402
from fieldtui.protocol.benchnoise import BEST_FLOOR_PCT, FALLBACK_NOISE_PCT, judge  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "agent" / "assets" / "demo.onnx"
OLD_RULE_PCT = 2.0  # the rule this replaces: any change of FPS over 2 % was a verdict


class TwiceTheWork:
    """A detector whose every inference runs twice: a run that is really about 2x slower."""

    def __init__(self, detector: Any) -> None:
        self._d = detector
        self.backend = detector.backend

    def preprocess(self, frame: Any) -> Any:
        return self._d.preprocess(frame)

    def infer(self, tensor: Any) -> Any:
        self._d.infer(tensor)
        return self._d.infer(tensor)

    def postprocess(self, outputs: Any, lb: Any) -> Any:
        return self._d.postprocess(outputs, lb)


def _run(detector: Any, frames: list, iterations: int) -> BenchmarkResult:
    return measure(detector, frames, batch=1, iterations=iterations, warmup=5)


def _row(label: str, old: BenchmarkResult, new: BenchmarkResult, rounds: bool = False) -> tuple[float, float]:
    assert old.latency and new.latency and old.fps and new.fps
    change = 100.0 * (new.latency.p50_ms - old.latency.p50_ms) / old.latency.p50_ms
    fps_change = 100.0 * (new.fps - old.fps) / old.fps
    best_old, best_new = (min(r.min_ms for r in x.rounds if r.min_ms) for x in (old, new))
    best = 100.0 * (best_new - best_old) / best_old
    verdict, noise, p = judge([r.p50_ms for r in new.rounds], [r.p50_ms for r in old.rounds], change, best)
    old_rule = "better" if fps_change > OLD_RULE_PCT else "worse" if fps_change < -OLD_RULE_PCT else "same"
    print(
        f"{label:<10} {old.latency.p50_ms:>8.2f} {new.latency.p50_ms:>8.2f} {change:>+8.1f}% "
        f"{fps_change:>+8.1f}% {best:>+8.1f}% {noise if noise is not None else '-':>7}% "
        f"{p if p is not None else '-':>7} "
        f"{verdict:>7} {old_rule:>9}"
    )
    if rounds:
        for run in (old, new):
            print(json.dumps([r.model_dump(include={"p50_ms", "min_ms"}) for r in run.rounds]))
    return change, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between the two runs of a pair")
    parser.add_argument("--iterations", type=int, default=80, help="timed calls per run (8 rounds)")
    parser.add_argument("--slower", action="store_true", help="add a pair with 2x the inference work")
    parser.add_argument("--rounds", action="store_true", help="also print each run's rounds as JSON")
    args = parser.parse_args()

    frames = scene_frames(8, 640, 480)
    print(f"demo model {DEMO.name}, onnxruntime fp32 batch 1, {args.iterations} calls per run")
    print(
        f"{'pair':<10} {'p50 old':>8} {'p50 new':>8} {'p50 chg':>9} {'fps chg':>9} {'best chg':>9} {'noise':>8} "
        f"{'p':>7} {'verdict':>7} {'2 % rule':>9}"
    )
    changes = []
    with Detector.load(DEMO, backend="onnxruntime") as detector:
        for i in range(args.pairs):
            first = _run(detector, frames, args.iterations)
            time.sleep(args.gap)
            second = _run(detector, frames, args.iterations)
            changes.append(_row(f"same {i + 1}", first, second, args.rounds))
        if args.slower:
            first = _run(detector, frames, args.iterations)
            _row("2x work", first, _run(TwiceTheWork(detector), frames, args.iterations), args.rounds)
    worst = max((abs(c) for c, _ in changes), default=0.0)
    worst_best = max((abs(b) for _, b in changes), default=0.0)
    print(
        f"noise between identical runs on this machine: |p50 change| up to {worst:.1f}%, "
        f"|fastest call change| up to {worst_best:.1f}% (BEST_FLOOR_PCT {BEST_FLOOR_PCT:.0f}%; "
        f"FALLBACK_NOISE_PCT, for stored runs without rounds, {FALLBACK_NOISE_PCT:.0f}%)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
