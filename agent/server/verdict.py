"""The agent's one health verdict: ok / degraded / failing, with the reasons a technician acts on.

Every surface shows this verdict and nothing else - ``GET /v1/health``, the SSE ``health`` event (the
dashboard, the device list), ``fieldtui status``, Prometheus ``fieldtui_agent_health{state}`` and the
mDNS TXT ``health`` - so no two places can disagree. :func:`health_verdict` is a pure function of what
the agent knows right now; a new kind of finding (a read-only disk, non-finite outputs) joins it as an
``extra`` (level, reason) pair rather than as a second verdict somewhere else.

What it weighs:

- the pipeline: failed (failing), stopped (degraded), no frames processed after the start grace (failing);
- the source: down and reconnecting (degraded);
- the camera: any camera-health finding (degraded), in the camera's own words;
- confidence: against last good's baseline (the figures recorded when it passed probation) - under
  ``DRIFT_RATIO`` of it is degraded, and the words say whether the camera explains it; with no
  baseline, against the alert line the Prometheus rule uses (0.60);
- dropped frames: over ``DROP_ALERT`` of the captured ones (degraded: inference can't keep up);
- probation: a note (not a fault) naming the candidate and what it is judged against.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.store.catalog import good_phrase
from fieldtui.protocol import HealthLevel, PipelineStatus, ProbationStatus

CONFIDENCE_ALERT = 0.60  # packaging's alert rule: confidence under this for 10 min
DRIFT_RATIO = 0.75  # live confidence under this share of last good's baseline: drift worth a look
DROP_ALERT = 0.20
START_GRACE_S = 10.0  # a pipeline that has processed nothing after this long is failing
RANK = {"ok": 0, "degraded": 1, "failing": 2}


@dataclass(frozen=True)
class Baseline:
    """Last good's recorded confidence: what the live confidence is held against."""

    version: str | None  # None: the configured model
    confidence: float | None


@dataclass(frozen=True)
class Verdict:
    status: HealthLevel
    reasons: list[str] = field(default_factory=list)  # worst first
    notes: list[str] = field(default_factory=list)  # worth knowing, not a fault (a probation)


def health_verdict(
    st: PipelineStatus,
    *,
    window_s: float,
    baseline: Baseline | None = None,
    probation: ProbationStatus | None = None,
    extra: Iterable[tuple[HealthLevel, str]] = (),
    now: float | None = None,
) -> Verdict:
    """The verdict on ``st`` (the pipeline's status with its last sample); see the module docstring."""
    now = time.time() if now is None else now
    found: list[tuple[HealthLevel, str]] = []
    source, sample = st.source, st.sample
    flowing = False
    if st.state == "failed":
        found.append(("failing", f"pipeline failed: {st.error or 'see GET /v1/logs'}"))
    elif st.state == "stopped":
        why = source.reason if source is not None and source.reason else "stopped on request"
        found.append(("degraded", f"pipeline stopped ({why}); POST /v1/pipeline/start to start it"))
    else:
        if source is not None and not source.up:
            found.append(("degraded", f"source down: {source.reason or 'no frames from ' + source.uri}"))
        running_for = now - (st.started_at or now)
        flowing = sample is not None and sample.fps > 0
        if running_for > START_GRACE_S and not flowing:
            found.append(("failing", f"no frames processed in the last {window_s:.0f} s"))
    camera = sample.camera if sample is not None else None
    if camera is not None and not camera.ok:
        found.append(("degraded", "camera: " + ("; ".join(camera.reasons) or "unhealthy")))
    if flowing and sample is not None:
        conf = sample.confidence_avg
        camera_bad = camera is not None and not camera.ok
        cause = " (the camera finding above may explain it)" if camera_bad else ""
        if not camera_bad and camera is not None:
            cause = " with a healthy camera: scene or model drift?"
        if conf is not None and baseline is not None and baseline.confidence:
            if conf < DRIFT_RATIO * baseline.confidence:
                found.append(
                    (
                        "degraded",
                        f"confidence {conf:.2f} vs {baseline.confidence:.2f} for "
                        f"{good_phrase(baseline.version)}{cause}",
                    )
                )
        elif conf is not None and conf < CONFIDENCE_ALERT:
            found.append(
                ("degraded", f"confidence {conf:.2f} under the {CONFIDENCE_ALERT:.2f} alert line{cause}")
            )
        if sample.drop_rate > DROP_ALERT:
            found.append(
                (
                    "degraded",
                    f"dropping {sample.drop_rate * 100:.0f}% of frames: inference can't keep up "
                    f"(p95 {sample.latency_p95_ms:.0f} ms); a faster backend or a lower source rate",
                )
            )
    found += list(extra)
    notes = []
    if probation is not None:
        left = max(0.0, probation.ends - now)
        notes.append(
            f"{probation.version} on probation for {left:.0f} s more, judged against "
            f"{good_phrase(probation.last_good)}"
        )
    found.sort(key=lambda item: -RANK[item[0]])  # stable: the order above within a level
    status: HealthLevel = found[0][0] if found else "ok"
    return Verdict(status, [reason for _, reason in found], notes)
