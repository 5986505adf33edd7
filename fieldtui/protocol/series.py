"""Latency, FPS and confidence over the day, a point a minute (``GET /v1/series``; agent/frames/series.py)."""

from __future__ import annotations

from pydantic import Field

from fieldtui.protocol.core import Model


class SeriesPoint(Model):
    """One minute of one camera, from the pipeline's rolling windows read during that minute."""

    ts: float = Field(description="start of the minute (Unix time)")
    camera: str
    readings: int = Field(description="rolling windows read in the minute (with frames)")
    fps: float = Field(description="mean of the windows' FPS")
    latency_p50_ms: float = Field(description="median of the windows' p50")
    latency_p95_ms: float = Field(description="highest of the windows' p95")
    confidence_avg: float | None = Field(
        description="mean of the windows' mean confidence; None: no detection"
    )


class SeriesPage(Model):
    """``GET /v1/series``: oldest first; at most ``capacity`` points per camera are kept."""

    minute_s: float
    capacity: int
    points: list[SeriesPoint]
