"""Cameras of a multi-camera agent: ``GET /v1/cameras``, ``GET/PUT/DELETE /v1/cameras/{name}``."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from fieldtui.protocol.core import Model, PipelineState, Sample, SourceStatus

CAMERA_NAME_PATTERN = r"^[a-z0-9-]{1,32}$"


class CameraStatus(Model):
    """One camera: its source (redacted), whether it runs, its last window of figures and health."""

    name: str
    enabled: bool
    state: PipelineState
    source: SourceStatus
    conf: float | None = Field(
        default=None, description="this camera's confidence threshold; None: the model's"
    )
    sample: Sample | None = None
    error: str | None = None


class CameraList(Model):
    cameras: list[CameraStatus]
    batch: int = Field(default=1, description="frames one inference call may carry (1: cameras take turns)")
    batching: str | None = Field(default=None, description="how the cameras share the model, one line")


class CameraChange(Model):
    """``PUT /v1/cameras/{name}``: add the camera, or change it. Keys left out keep their value (for a
    new camera ``source`` is required)."""

    model_config = ConfigDict(strict=True)  # a request: 0 is not false, "0.5" is not 0.5

    source: str | None = Field(default=None, min_length=1)
    conf: float | None = Field(default=None, ge=0.0, le=1.0)
    enabled: bool | None = None


def camera_summary(listing: CameraList) -> str:
    """``3 cameras, 1 unhealthy``: unhealthy = enabled and not delivering, or failing a health check."""
    bad = sum(1 for c in listing.cameras if c.enabled and not _healthy(c))
    n = len(listing.cameras)
    return f"{n} camera{'s' * (n != 1)}" + (f", {bad} unhealthy" if bad else "")


def _healthy(c: CameraStatus) -> bool:
    health = c.sample.camera if c.sample is not None else None
    return c.source.up and c.state == "running" and (health is None or health.ok)


def camera_lines(listing: CameraList) -> list[str]:
    """The list as a technician reads it (the agent's and the console's CLI print the same lines)."""
    lines = [f"{'camera':<16} {'state':<12} {'fps':>6} {'drop':>6} {'conf':>6}  health / source"]
    for c in listing.cameras:
        s = c.sample
        fps = f"{s.fps:.1f}" if s is not None else "-"
        drop = f"{s.drop_rate:.0%}" if s is not None else "-"
        conf = f"{s.confidence_avg:.2f}" if s is not None and s.confidence_avg is not None else "-"
        health = s.camera if s is not None else None
        if not c.enabled:
            note = "disabled"
        elif not c.source.up:
            note = f"DOWN: {c.source.reason or 'no frames'}"
        elif health is not None and not health.ok:
            note = "CHECK: " + "; ".join(health.reasons)
        else:
            note = "ok"
        lines.append(f"{c.name:<16} {c.state:<12} {fps:>6} {drop:>6} {conf:>6}  {note}  [{c.source.uri}]")
    if listing.batching:
        lines.append(f"{camera_summary(listing)}; {listing.batching}")
    else:
        lines.append(
            camera_summary(listing) + (f"; batch up to {listing.batch}" if listing.batch > 1 else "")
        )
    return lines
