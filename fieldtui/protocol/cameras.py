"""Cameras of a multi-camera agent: ``GET /v1/cameras``, ``GET/PUT/DELETE /v1/cameras/{name}``."""

from __future__ import annotations

from pydantic import Field

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


class CameraChange(Model):
    """``PUT /v1/cameras/{name}``: add the camera, or change it. Keys left out keep their value (for a
    new camera ``source`` is required)."""

    source: str | None = Field(default=None, min_length=1)
    conf: float | None = Field(default=None, ge=0.0, le=1.0)
    enabled: bool | None = None
