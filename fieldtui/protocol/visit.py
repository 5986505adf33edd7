"""``fieldtui-agent report --json``: what the visit report reads over HTTP, in one document for the SSH path."""

from __future__ import annotations

from pydantic import Field

from fieldtui.protocol.bench import BenchmarkRun
from fieldtui.protocol.core import Job, Model
from fieldtui.protocol.forwarding import ForwardingState
from fieldtui.protocol.series import SeriesPage


class VisitFacts(Model):
    """Jobs, benchmark runs, forwarding, the per-minute series and a snapshot of one device; what could
    not be read is None, with the reason in ``notes`` (an agent that is not serving has no snapshot)."""

    jobs: list[Job] = Field(default_factory=list)
    benchmarks: list[BenchmarkRun] = Field(default_factory=list)
    forwarding: ForwardingState | None = Field(default=None, description="api_key is never included")
    series: SeriesPage | None = None
    snapshot_jpeg_b64: str | None = None
    snapshot_error: str | None = None
    notes: list[str] = Field(default_factory=list)
