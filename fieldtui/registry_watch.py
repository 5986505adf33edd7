"""``fieldtui registry rollout DIR --version V --watch PROMETHEUS_URL --step 5,25,100``: a pull rollout
that widens itself while Prometheus says the cohort holds up, and stops itself when it does not.

No server of ours watches a fleet: its Prometheus already scrapes every agent, and each agent counts
its activations and probation verdicts by the candidate's version (agent/store/outcomes.py). At each
step the percent is raised with the same writer as ``--percent`` (:meth:`ModelFolder.set_rollout`),
then for ``--soak`` seconds (up to twice that while a device of the version is still on probation, or
until a first device of the step has its verdict) one PromQL query every ``--interval`` seconds reads
the cohort's verdicts::

    sum by (outcome) (max_over_time(
        {__name__=~"fieldtui_agent_(activations|probations)_total", version="V"}[WINDOW]))

``outcome`` is ``ok``/``failed`` (activations) and ``passed``/``rolled_back`` (probations); the failure
rate is ``(failed + rolled_back) / (failed + passed + rolled_back)`` and devices still on probation are
``ok - passed - rolled_back``. ``max_over_time`` over the watch's own span keeps a verdict counted when
an agent restarts (its counters start again at 0). When the rate goes above ``--max-failure-rate`` the
percent is set back to 0 at once: no further device takes V (those that took it keep their verdict:
the rolled-back ones already serve their last good model again).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from fieldtui.errors import ConsoleError
from fieldtui.redact import redact
from fieldtui.registry import ModelFolder

OUTCOMES_QUERY = (
    'sum by (outcome) (max_over_time({{__name__=~"fieldtui_agent_(activations|probations)_total", '
    'version="{version}"}}[{window}s]))'
)
SERVING_QUERY = 'count(fieldtui_agent_model_info{{version="{version}"}})'
LOST_AFTER = 3  # queries failing in a row before the watch gives up (the rollout stays where it is)


@dataclass(frozen=True)
class Cohort:
    """What Prometheus says about the devices that tried one version."""

    ok: float = 0.0  # activations that swapped the version in
    failed: float = 0.0  # activations refused or failed before the swap
    passed: float = 0.0
    rolled_back: float = 0.0
    serving: int = 0  # devices serving the version now

    @property
    def failures(self) -> float:
        return self.failed + self.rolled_back

    @property
    def decided(self) -> float:
        return self.failed + self.passed + self.rolled_back

    @property
    def pending(self) -> float:
        """Devices still on probation with the version."""
        return max(0.0, self.ok - self.passed - self.rolled_back)

    @property
    def failure_rate(self) -> float:
        return self.failures / self.decided if self.decided else 0.0

    def line(self) -> str:
        return (
            f"{self.serving} serving, {self.passed:g} passed probation, {self.pending:g} on probation, "
            f"{self.rolled_back:g} rolled back, {self.failed:g} failed to activate "
            f"(failure rate {self.failure_rate:.0%})"
        )


class Prometheus:
    """Instant queries against Prometheus's HTTP API (``GET /api/v1/query``)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConsoleError(f"--watch {redact(url)}: give Prometheus's URL, like http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to; ConsoleError saying what went wrong."""
        shown = redact(self.url)
        try:
            r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=self.timeout)
        except httpx.HTTPError as err:
            raise ConsoleError(
                f"cannot reach Prometheus at {shown} ({type(err).__name__}: {redact(str(err)) or 'no answer'});"
                " check the --watch URL and that Prometheus runs"
            ) from None
        try:
            body = r.json()
            status = body["status"]
        except (ValueError, TypeError, KeyError):
            raise ConsoleError(
                f"{shown} answered HTTP {r.status_code} but not as Prometheus's API; give the server's base "
                "URL, like http://prometheus:9090"
            ) from None
        if status != "success":
            raise ConsoleError(
                f"Prometheus at {shown} refused the query ({body.get('errorType', r.status_code)}: "
                f"{body.get('error', 'no reason given')}): {expr}"
            )
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise ConsoleError(
                f"Prometheus at {shown} answered a {data.get('resultType')}, not a vector: {expr}"
            )
        return data.get("result") or []

    def cohort(self, version: str, window_s: float) -> Cohort:
        window = max(60, math.ceil(window_s))
        by: dict[str, float] = {}
        for row in self.query(OUTCOMES_QUERY.format(version=version, window=window)):
            value = float(row["value"][1])
            by[row["metric"].get("outcome", "")] = value if math.isfinite(value) else 0.0
        serving = self.query(SERVING_QUERY.format(version=version))
        return Cohort(
            ok=by.get("ok", 0.0),
            failed=by.get("failed", 0.0),
            passed=by.get("passed", 0.0),
            rolled_back=by.get("rolled_back", 0.0),
            serving=int(float(serving[0]["value"][1])) if serving else 0,
        )


def parse_steps(text: str) -> list[float]:
    """``5,25,100`` -> [5.0, 25.0, 100.0]: rising percents from above 0 to 100."""
    steps: list[float] = []
    for part in text.split(","):
        try:
            value = float(part.strip().rstrip("%"))
        except ValueError:
            raise ConsoleError(
                f"--step {text}: {part.strip()!r} is not a percent; use e.g. --step 5,25,100"
            ) from None
        if not 0.0 < value <= 100.0:
            raise ConsoleError(
                f"--step {text}: {value:g} is out of range; each step is above 0 and at most 100"
            )
        if steps and value <= steps[-1]:
            raise ConsoleError(f"--step {text}: the steps must rise ({value:g} follows {steps[-1]:g})")
        steps.append(value)
    return steps


@dataclass
class RolloutWatch:
    """One watched rollout: :meth:`run` raises ``folder``'s rollout of ``version`` through ``steps``."""

    folder: ModelFolder
    version: str
    steps: Sequence[float]
    prometheus: Prometheus
    max_failure_rate: float = 0.1
    interval: float = 15.0
    soak: float = 600.0
    rollout_id: str | None = None
    say: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _start: float = field(default=0.0, init=False, repr=False)  # when the watch began (clock)
    _decided: float = field(default=0.0, init=False, repr=False)  # verdicts seen at the last query

    def run(self) -> int:
        """0 when the rollout reached the last step; 1 when the cohort failed (the percent is then 0) or
        its verdicts never came. ConsoleError before anything changed for a version missing from the
        folder or a Prometheus that cannot answer."""
        if self.version not in self.folder.models():
            raise ConsoleError(
                f"no model file for version {self.version!r} in {self.folder.root}; copy it there first"
            )
        self._start = self.clock()
        before = self.prometheus.cohort(self.version, 0)  # reachable and the query works: nothing changed yet
        self.say(f"watching through Prometheus at {redact(self.prometheus.url)}: {before.line()}")
        self._decided = before.decided
        for step in self.steps:
            self.say(self.folder.set_rollout(self.version, step, self.rollout_id))
            if self.rollout_id is None and (staged := self.folder.rollout()) is not None:
                self.rollout_id = staged[1].id  # keep the id: every later step only adds devices
            if step >= 100.0:
                return 0
            if (verdict := self._soak(step)) != 0:
                return verdict
        self.say(
            f"the rollout of {self.version} stays at {self.steps[-1]:g}% (the last --step); "
            "--step ...,100 ends it"
        )
        return 0

    def _soak(self, step: float) -> int:
        """Watch one step for ``soak`` seconds, and up to one more soak while a device is on probation
        or until a first device of the step has its verdict (a step nobody took proves nothing)."""
        began, decided_before = self.clock(), self._decided
        shown, errors = "", 0
        while True:
            self.sleep(self.interval)
            now = self.clock()
            try:
                cohort = self.prometheus.cohort(self.version, now - self._start + self.interval)
                errors = 0
            except ConsoleError as err:
                errors += 1
                if errors >= LOST_AFTER:
                    raise ConsoleError(
                        f"{err}; the rollout of {self.version} stays at {step:g}% (rerun with --watch to go "
                        "on, or --percent 0 to stop it)"
                    ) from None
                continue
            self._decided = cohort.decided
            if cohort.line() != shown:
                shown = cohort.line()
                self.say(f"  {step:g}%: {shown}")
            if cohort.failure_rate > self.max_failure_rate:
                self.say(self.folder.set_rollout(self.version, 0, self.rollout_id))
                self.say(
                    f"stopped: the failure rate of {self.version} is {cohort.failure_rate:.0%} "
                    f"({cohort.failures:g} of {cohort.decided:g} devices), above --max-failure-rate "
                    f"{self.max_failure_rate:g}; no further device takes it"
                )
                return 1
            evidence = cohort.decided > decided_before
            if now - began >= self.soak and cohort.pending == 0 and evidence:
                return 0
            if now - began >= 2 * self.soak and cohort.pending == 0:
                self.say(
                    f"  {step:g}%: no device gave a verdict on {self.version} in {2 * self.soak:g} s "
                    "(too few devices at this step, or they poll rarely); going on"
                )
                return 0
            if now - began >= 2 * self.soak:
                self.say(
                    f"stopped at {step:g}%: {cohort.pending:g} device(s) still on probation with "
                    f"{self.version} after {2 * self.soak:g} s; the rollout stays at {step:g}% "
                    "(rerun with --watch to go on)"
                )
                return 1
