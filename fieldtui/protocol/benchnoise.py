"""Is a benchmark change real, or the device's own noise? One decision for the agent, the CLI, the TUI
and the visit report.

A benchmark times its calls in rounds (agent/bench/runner.py) and keeps each round's p50. Two runs are
"better" or "worse" only when both hold:

- the change of p50 is larger than the runs' own spread: half the range of their per-round p50s
  around the median (the larger of the two runs), and never less than :data:`NOISE_FLOOR_PCT`;
- a Mann-Whitney U test of the two sets of per-round p50s says they differ (two-sided p below
  :data:`ALPHA`): a single slow round (another process woke up) cannot make a verdict;
- the fastest call moved the same way by more than :data:`BEST_FLOOR_PCT`. Another process taking
  the CPU for a whole run makes typical calls slower with tight rounds, but rarely every call: the best
  one still shows what the device can do.

bench/benchnoise.py on a 2-core machine shared by several test runs (load average 14 to 24), 12 pairs
of identical runs: p50 moved by up to 47 % and the rounds spread by ±18 to ±51 %; the former fixed 2 %
rule called 11 pairs better or worse, this one 1 (p50 +24 % with the rounds apart and the fastest call
56 % slower: that run was slower). Twice the inference work: +94 % with the rounds apart, "worse"; but
at the busiest moments +14 % and +35 % inside a ±27 % and ±43 % spread, "the same within noise",
which is the honest answer on a machine that busy.

Otherwise they are "the same within noise (±x%)". Results from before per-round figures were kept
have no spread: they are judged against :data:`FALLBACK_NOISE_PCT`, the noise that
``bench/benchnoise.py`` measures between two identical runs on a busy machine.

Plain Python (no SciPy): the exact U distribution for the handful of rounds a run has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

Verdict = Literal["better", "worse", "same"]

ALPHA = 0.05
NOISE_FLOOR_PCT = 2.0  # no device repeats itself closer than this: never a verdict below it
FALLBACK_NOISE_PCT = 15.0  # no per-round figures: bench/benchnoise.py's spread of identical runs
BEST_FLOOR_PCT = 10.0  # the fastest call must move by more than this for a verdict (when it is known)
EXACT_UP_TO = 40  # rounds in both runs together: exact U distribution below, normal approximation above


@lru_cache(maxsize=512)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many orderings of m + n distinct values give each U = 0..m*n (the null distribution)."""
    if m == 0 or n == 0:
        return (1,)
    with_last_of_a = _u_counts(m - 1, n)  # the largest value is from a: it beats all n of b
    with_last_of_b = _u_counts(m, n - 1)
    out = [0] * (m * n + 1)
    for u, c in enumerate(with_last_of_a):
        out[u + n] += c
    for u, c in enumerate(with_last_of_b):
        out[u] += c
    return tuple(out)


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test that ``a`` and ``b`` come from one distribution
    (ties count half). 1.0 when either side is empty."""
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        return 1.0
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    if m + n <= EXACT_UP_TO:
        counts = _u_counts(m, n)
        total = sum(counts)
        low = sum(counts[: math.floor(u) + 1]) / total
        high = sum(counts[math.ceil(u) :]) / total
        return min(1.0, 2.0 * min(low, high))
    mean, sd = m * n / 2.0, math.sqrt(m * n * (m + n + 1) / 12.0)
    z = max(0.0, abs(u - mean) - 0.5) / sd
    return min(1.0, math.erfc(z / math.sqrt(2.0)))


def spread_pct(values: Sequence[float]) -> float | None:
    """Half the range of ``values`` as a percentage of their median (``±x%``); None under 3 values."""
    if len(values) < 3:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
    if median <= 0:
        return None
    return 100.0 * (ordered[-1] - ordered[0]) / 2.0 / median


def noise_of(new_rounds: Sequence[float], old_rounds: Sequence[float]) -> float | None:
    """The two runs' noise: the larger spread of their per-round p50s (None when either has none)."""
    spreads = [spread_pct(new_rounds), spread_pct(old_rounds)]
    if None in spreads:
        return None
    return round(max(s for s in spreads if s is not None), 1)


def decide(
    p50_change_pct: float | None,
    noise_pct: float | None,
    p_value: float | None,
    best_change_pct: float | None = None,
) -> Verdict:
    """The verdict. ``p50_change_pct``: positive = slower; ``noise_pct``: the runs' spread (None: not
    known, :data:`FALLBACK_NOISE_PCT` is used); ``p_value``: Mann-Whitney on the per-round p50s
    (None: not measured); ``best_change_pct``: the fastest call's change (None: not measured). What
    was not measured does not decide."""
    if p50_change_pct is None:
        return "same"
    if abs(p50_change_pct) <= effective_noise(noise_pct):
        return "same"
    if p_value is not None and p_value >= ALPHA:
        return "same"
    if best_change_pct is not None and not (
        abs(best_change_pct) > BEST_FLOOR_PCT and (best_change_pct > 0) == (p50_change_pct > 0)
    ):
        return "same"
    return "worse" if p50_change_pct > 0 else "better"


def busier(p50_change_pct: float | None, noise_pct: float | None, best_change_pct: float | None) -> bool:
    """True when typical calls moved beyond the noise but the fastest did not: the device was busier
    (or idler), the model and runtime were not slower (or faster)."""
    return (
        p50_change_pct is not None
        and best_change_pct is not None
        and abs(p50_change_pct) > effective_noise(noise_pct)
        and abs(best_change_pct) <= BEST_FLOOR_PCT
    )


def effective_noise(noise_pct: float | None) -> float:
    """The band inside which a change is noise."""
    return max(NOISE_FLOOR_PCT, FALLBACK_NOISE_PCT if noise_pct is None else noise_pct)


def judge(
    new_rounds: Sequence[float],
    old_rounds: Sequence[float],
    p50_change_pct: float | None,
    best_change_pct: float | None = None,
) -> tuple[Verdict, float | None, float | None]:
    """(verdict, noise %, p-value) of a change, from the per-round p50s of the two runs."""
    noise = noise_of(new_rounds, old_rounds)
    p = round(mann_whitney_p(new_rounds, old_rounds), 4) if noise is not None else None
    return decide(p50_change_pct, noise, p, best_change_pct), noise, p
