"""How activations and probations ended, counted for Prometheus: what a staged rollout is watched by.

``fieldtui_agent_activations_total{version, outcome}`` (``ok``: swapped in; ``failed``: refused or
failed before the swap) and ``fieldtui_agent_probations_total{version, outcome}`` (``passed``,
``rolled_back``), counted where agent/store/activation.py decides. The label is the *candidate's*
version: a device whose probation rolled back serves the old version again, so only the counter still
says which version failed there. ``fieldtui registry rollout --watch`` (fieldtui/registry_watch.py)
reads them with one PromQL query, written down in the README.

Every series of a version is created at 0 as soon as its activation starts, so a rate or increase over
them sees the step from 0 to 1 instead of a series born at 1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

ACTIVATION = ("ok", "failed")
PROBATION = ("passed", "rolled_back")
KEEP_VERSIONS = 64  # a long-lived agent that saw more versions forgets the oldest (bounded cardinality)


class ModelOutcomes(Collector):
    """Counts per (kind, version, outcome); a custom collector registered in the agent's registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}  # version -> outcome -> count (insertion-ordered)

    def started(self, version: str) -> None:
        """An activation of ``version`` began: its series exist (at 0) from now on."""
        with self._lock:
            self._ensure(version)

    def count(self, version: str | None, outcome: str) -> None:
        """One activation (``ok``/``failed``) or probation (``passed``/``rolled_back``) of ``version``."""
        if outcome not in ACTIVATION + PROBATION:
            raise ValueError(f"unknown outcome {outcome!r}")
        with self._lock:
            self._ensure(version or "")[outcome] += 1

    def _ensure(self, version: str) -> dict[str, int]:
        counts = self._counts.get(version)
        if counts is None:
            while len(self._counts) >= KEEP_VERSIONS:
                del self._counts[next(iter(self._counts))]
            counts = self._counts[version] = dict.fromkeys(ACTIVATION + PROBATION, 0)
        return counts

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {v: dict(c) for v, c in self._counts.items()}

    def describe(self) -> Iterable[Metric]:
        return []  # collected at scrape time only

    def collect(self) -> Iterable[Metric]:
        counts = self.snapshot()
        activations = CounterMetricFamily(
            "fieldtui_agent_activations",
            "model activations by the candidate's version: ok (swapped in) or failed (refused, or failed "
            "its health check)",
            labels=["version", "outcome"],
        )
        probations = CounterMetricFamily(
            "fieldtui_agent_probations",
            "probation verdicts by the candidate's version: passed, or rolled_back (automatically)",
            labels=["version", "outcome"],
        )
        for version, by in counts.items():
            for outcome in ACTIVATION:
                activations.add_metric([version, outcome], by[outcome])
            for outcome in PROBATION:
                probations.add_metric([version, outcome], by[outcome])
        yield activations
        yield probations
