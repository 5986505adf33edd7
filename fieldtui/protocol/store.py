"""The model store: manifests, versions, activation history, registry offers, pushes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fieldtui.protocol.core import Job, Model, ModelInfo

# --- model store ----------------------------------------------------------------------------------

ModelFormat = Literal["onnx", "engine", "hef", "tflite"]
HistoryAction = Literal[
    "upload",
    "activate",
    "rollback",
    "auto_rollback",
    "remove",
    "startup",
    "pull",
    "forwarding",  # Trio endpoint
    "forwarding_settings",  # forwarding on or off, mode, rules, key
]
HistoryOutcome = Literal[
    "started",  # in progress (a row left so by a crash is closed as "interrupted" at the next start)
    "stored",  # an upload verified and in the store
    "refused",  # an upload or activation refused before anything changed
    "pending",  # made current while no agent ran: loaded and checked at the next start
    "probation",  # serving, watched against the previous model
    "good",  # serving and proven (probation passed, or loaded at start)
    "failed",  # checked and found wanting; the previous model kept serving
    "rolled_back",  # was serving, replaced by the last good model
    "superseded",  # another activation ended its probation before a verdict (not a pass)
    "interrupted",  # the agent stopped half-way; see the reason for what the next start did
    "removed",
    "changed",  # a setting changed (forwarding: the Trio endpoint, and what became of the key)
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


Verdict = Literal[
    "passed",  # passed its probation (or was activated with probation off): it may be last good
    "failed",  # its activation or probation failed; see the reason
    "rolled_back",  # was serving and rolled back; see the reason
    "superseded",  # its probation was ended by another activation before a verdict
    "on_probation",
    "interrupted",  # the agent stopped before a verdict
    "pending",  # made current with the agent stopped: judged at the next start
    "never_activated",
]
BAD_VERDICTS = ("failed", "rolled_back")


class ModelVersion(Model):
    version: str
    manifest: ModelManifest
    current: bool = Field(description="models/current points here: the model the agent starts with")
    serving: bool = Field(description="the pipeline runs it right now")
    state: Literal["serving", "probation", "standby", "inactive"]
    last_good: bool = Field(default=False, description="a rollback would go to this version")
    verdict: Verdict = Field(default="never_activated", description="how its latest activation ended")
    verdict_reason: str | None = Field(default=None, description="why it failed or was rolled back")


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
    last_good: str | None = Field(
        default=None, description="what it is judged against and where a failure goes (None: configured)"
    )
    baseline_confidence: float | None = Field(default=None, description="last good's confidence")


class RollbackPlan(Model):
    """Where ``POST /v1/models/rollback`` goes right now, and why there."""

    version: str | None = Field(description="None: the configured model")
    label: str = Field(description="the version, or 'the configured model'")
    why: str


class DamagedVersion(Model):
    """A version folder whose manifest cannot be read: listed with why, never loaded; delete or prune
    removes it."""

    version: str
    reason: str


class PullStatus(Model):
    """Pull mode as ``GET /v1/models`` shows it: where from, whether offers must be signed, the last poll."""

    registry: str
    signed: bool = Field(description="True: only offers signed by the configured registry_key are taken")
    key: str | None = Field(default=None, description="the public key's fingerprint (sha256, 16 hex)")
    last: str | None = Field(
        default=None, description="what the last poll did (a back-off after a failed download, a refusal)"
    )

    def line(self) -> str:
        how = (
            f"offers must be signed (key {self.key})"
            if self.signed
            else "UNSIGNED offers accepted: no [models] registry_key configured"
        )
        return f"pull      from {self.registry}; {how}" + (f"; last: {self.last}" if self.last else "")


class ModelList(Model):
    """``GET /v1/models`` and ``fieldtui-agent models list --json``."""

    serving: ModelInfo | None = Field(default=None, description="what the pipeline runs now")
    current: str | None = None
    last_good: str | None = Field(
        default=None, description="where a rollback would go (None: the configured model, or nowhere)"
    )
    rollback: RollbackPlan | None = Field(
        default=None, description="where a rollback goes now; None: nowhere (the agent answers 409)"
    )
    versions: list[ModelVersion] = Field(default_factory=list, description="newest first")
    damaged: list[DamagedVersion] = Field(
        default_factory=list, description="versions whose manifest is unreadable, with the reason"
    )
    history: list[ModelHistoryEntry] = Field(default_factory=list, description="newest first")
    probation: ProbationStatus | None = None
    pull: PullStatus | None = Field(default=None, description="pull mode; None: not configured")
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
        if self.pull is not None:
            lines.append(self.pull.line())
        rows = [("VERSION", "STATE", "VERDICT", "CURRENT", "SIZE", "SHA256", "LAYOUT", "CREATED", "SOURCE")]
        for v in self.versions:
            m = v.manifest
            state = v.state + (" (rollback target)" if v.last_good else "")
            created = dt.datetime.fromtimestamp(m.created).strftime("%Y-%m-%d %H:%M")
            size = f"{m.size / 1e6:.1f} MB"
            rows.append(
                (
                    v.version,
                    state,
                    v.verdict.replace("_", " "),
                    "*" if v.current else "",
                    size,
                    m.sha256[:12],
                    m.layout,
                    created,
                    m.source,
                )
            )
        if len(rows) > 1:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        else:
            lines.append("no versions stored")
        for d in self.damaged:
            lines.append(f"damaged   {d.version}: {d.reason}")
        if self.rollback is not None:
            lines.append(f"rollback  goes to {self.rollback.label}: {self.rollback.why}")
        else:
            lines.append("rollback  nowhere to go: nothing has passed probation besides what serves")
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
    summary: str | None = Field(
        default=None,
        description="one line for a toast or an event line, e.g. 'auto-rollback from junk2 to v2: "
        "confidence 0.42 vs 0.98 for v2 over 60 s'",
    )


class RegistryRollout(Model):
    """A staged rollout on an offer: only the devices whose cohort point
    (:func:`fieldtui.protocol.offers.cohort_point`) falls under ``percent`` take it."""

    id: str = Field(min_length=1, max_length=128)
    percent: float = Field(ge=0.0, le=100.0)


class RegistryOffer(Model):
    """``GET {registry}/latest?device_id=ID``: the version a device should run (a static file will do)."""

    version: str
    download_url: str = Field(description="absolute, or relative to the registry URL")
    sha256: str
    size: int | None = None
    rollout: RegistryRollout | None = Field(
        default=None, description="a staged rollout: only this share of the devices takes the offer"
    )
    signature: str | None = Field(
        default=None,
        description="base64 Ed25519 signature over fieldtui.protocol.offers.signed_bytes(offer)",
    )


class PushResult(Model):
    """What ``fieldtui push --json`` prints."""

    version: ModelVersion
    uploaded: bool = Field(description="False when the device already had these bytes")
    activation: Job | None = None
