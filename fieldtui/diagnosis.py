"""What a device's health is, in words a technician can act on.

The agent computes the one verdict (agent/server/verdict.py: camera, confidence against last good's baseline,
frame rate, drops, probation) and every surface shows it as it is: :func:`diagnose` returns the agent's
reasons unchanged whenever the agent's report is at hand. Only without one (an agent that has not said
yet) does it read the sample itself, with the same words: low confidence alone cannot tell a dirty lens
from a drifting scene or model, the camera statistics beside it can ("confidence 0.41 and sharpness down
70%" points at the lens, "confidence 0.41 with a healthy camera" at the scene or the model).
"""

from __future__ import annotations

from fieldtui.protocol import CameraHealth, HealthReport, Sample

CONFIDENCE_ALERT = 0.60  # the alert rule's threshold (packaging/): the same line on the dashboard
DROP_ALERT = 0.20
SHARPNESS_DROP = 0.5
DARK = 35.0
BRIGHT = 235.0


def _camera_cause(camera: CameraHealth) -> str | None:
    """The camera finding that explains low confidence best, most specific first."""
    if camera.covered:
        return "the image dark and featureless: lens covered?"
    if camera.frozen:
        return "the picture frozen: camera stuck? check it and its cable"
    if camera.sharpness_ratio is not None and camera.sharpness_ratio < SHARPNESS_DROP:
        return f"sharpness down {100 * (1 - camera.sharpness_ratio):.0f}%: lens dirty or blocked?"
    if camera.brightness < DARK:
        return f"the image very dark (brightness {camera.brightness:.0f}): lights off or lens covered?"
    if camera.brightness > BRIGHT:
        return f"the image washed out (brightness {camera.brightness:.0f}): glare or exposure?"
    return None


def diagnose(sample: Sample | None, health: HealthReport | None = None) -> list[str]:
    """Findings, most telling first; empty when all is well. With the agent's ``health``: exactly its
    reasons, so the dashboard, the device list and ``fieldtui status`` never disagree."""
    if health is not None:
        return list(health.reasons)
    out: list[str] = []
    camera = sample.camera if sample is not None else None
    if sample is not None:
        conf = sample.confidence_avg
        if conf is not None and conf < CONFIDENCE_ALERT:
            cause = _camera_cause(camera) if camera is not None else None
            if cause is not None:
                out.append(f"confidence {conf:.2f} and {cause}")
            elif camera is not None:
                out.append(
                    f"confidence {conf:.2f} with a healthy camera: scene or model drift? "
                    "compare with the previous model"
                )
            else:
                out.append(f"confidence {conf:.2f} is under the {CONFIDENCE_ALERT:.2f} alert line")
        elif camera is not None and not camera.ok:
            out += [f"camera: {reason}" for reason in camera.reasons or ["not ok"]]
        if sample.drop_rate > DROP_ALERT:
            out.append(
                f"dropping {sample.drop_rate * 100:.0f}% of frames: inference can't keep up "
                f"(p95 {sample.latency_p95_ms:.0f} ms); a faster backend or a lower source rate"
            )
    return list(dict.fromkeys(out))
