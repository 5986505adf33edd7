"""The model store: manifests, versions, activation history, registry offers, pushes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fieldtui.protocol.core import Job, Model, ModelInfo

# --- model store ----------------------------------------------------------------------------------

ModelFormat = Literal["onnx", "engine", "hef", "tflite"]
HistoryAction = Literal["upload", "activate", "rollback", "auto_rollback", "remove", "startup"]
HistoryOutcome = Literal[
    "started",  # in progress (a row left so by a crash is closed as "interrupted" at the next start)
    "stored",  # an upload verified and in the store
    "refused",  # an upload or activation refused before anything changed
    "pending",  # made current while no agent ran: loaded and checked at the next start
    "probation",  # serving, watched against the previous model
    "good",  # serving and proven (probation passed, or loaded at start)
    "failed",  # checked and found wanting; the previous model kept serving
    "rolled_back",  # was serving, replaced by the previous model
    "interrupted",  # the agent stopped half-way; see the reason for what the next start did
    "removed",
]


class TensorInfo(Model):
    name: str
    shape: list[int | str | None]
    dtype: str


class ModelManifest(Model):
    """``models/<version>/manifest.json``: what was stored and checked, written before the commit rename."""

    version: str
    file: str = Field(description="the model file beside the manifest, e.g. model.onnx")
    sha256: str
    size: int
    format: ModelFormat
    backend: str
    layout: str
    input_shape: list[int]
    input_dtype: str
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    names: dict[int, str] = {}
    created: float
    source: str = Field(description="where it came from: an upload, a registry, a file added on the device")


class ModelVersion(Model):
    version: str
    manifest: ModelManifest
    current: bool = Field(description="models/current points here: the model the agent starts with")
    serving: bool = Field(description="the pipeline runs it right now")
    state: Literal["serving", "probation", "standby", "inactive"]
    last_good: bool = Field(default=False, description="a rollback would go to this version")


class ModelHistoryEntry(Model):
    """One row of the store's history (uploads, activations, rollbacks, removals), newest first."""

    id: int
    ts: float
    action: HistoryAction
    version: str | None = None
    previous: str | None = Field(default=None, description="what served before (None: the configured model)")
    outcome: HistoryOutcome
    reason: str | None = None
    job_id: str | None = None
    details: dict[str, Any] = {}
    updated: float | None = None


class ProbationStatus(Model):
    version: str
    previous: str | None
    started: float
    ends: float
    frames: int = 0


class ModelList(Model):
    """``GET /v1/models`` and ``fieldtui-agent models list --json``."""

    serving: ModelInfo | None = Field(default=None, description="what the pipeline runs now")
    current: str | None = None
    last_good: str | None = Field(
        default=None, description="where a rollback would go (None: the configured model, or nowhere)"
    )
    versions: list[ModelVersion] = Field(default_factory=list, description="newest first")
    history: list[ModelHistoryEntry] = Field(default_factory=list, description="newest first")
    probation: ProbationStatus | None = None
    keep: int
    max_upload_bytes: int

    def summary_lines(self, history: int = 8) -> list[str]:
        """The text both command lines print: versions, then the latest history with reasons."""
        import datetime as dt

        serving = self.serving.version or self.serving.path if self.serving else "nothing"
        lines = [
            f"serving   {serving}" + ("" if self.serving is None or self.serving.version else " (configured)")
        ]
        if self.probation is not None:
            p = self.probation
            left = max(0.0, p.ends - dt.datetime.now().timestamp())
            lines.append(f"probation {p.version}: {p.frames} frames so far, {left:.0f} s left")
        rows = [("VERSION", "STATE", "CURRENT", "SIZE", "SHA256", "LAYOUT", "CREATED", "SOURCE")]
        for v in self.versions:
            m = v.manifest
            state = v.state + (" (rollback target)" if v.last_good else "")
            created = dt.datetime.fromtimestamp(m.created).strftime("%Y-%m-%d %H:%M")
            size = f"{m.size / 1e6:.1f} MB"
            rows.append(
                (v.version, state, "*" if v.current else "", size, m.sha256[:12], m.layout, created, m.source)
            )
        if len(rows) > 1:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        else:
            lines.append("no versions stored")
        for h in self.history[:history]:
            when = dt.datetime.fromtimestamp(h.ts).strftime("%Y-%m-%d %H:%M:%S")
            what = f"{h.action} {h.version or '(configured model)'}"
            lines.append(f"{when}  {what}: {h.outcome}" + (f" - {h.reason}" if h.reason else ""))
        return lines


class ModelEvent(ModelInfo):
    """SSE ``model``: the model now serving (a :class:`ModelInfo`, so a reader that only knows that
    still gets it), with why it changed."""

    change: Literal["activated", "rolled_back", "auto_rolled_back"] | None = None
    reason: str | None = None
    previous: str | None = None


class RegistryOffer(Model):
    """``GET {registry}/latest?device_id=ID``: the version a device should run (a static file will do)."""

    version: str
    download_url: str = Field(description="absolute, or relative to the registry URL")
    sha256: str
    size: int | None = None


class PushResult(Model):
    """What ``fieldtui push --json`` prints."""

    version: ModelVersion
    uploaded: bool = Field(description="False when the device already had these bytes")
    activation: Job | None = None
