"""Trio forwarding: rules, settings, errors and test results."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from fieldtui.protocol.core import Model

# --- Trio forwarding ------------------------------------------------------------------------------

ForwardMode = Literal["check-once", "frame"]
TRIO_BASE_URL = "https://trio.machinefi.com/api"


class ForwardingRules(Model):
    """Which frames go to Trio. A frame qualifies when it comes from one of ``cameras`` (empty: every
    camera), a detection of ``classes`` (empty: any class) reaches ``min_confidence`` and that class is
    not cooling down on that camera; then the global token bucket (``rate_per_minute``, bursts of
    ``burst``) must have a token."""

    cameras: list[str] = Field(default_factory=list, description="camera names; empty = every camera")

    classes: list[str] = Field(default_factory=list, description="class names; empty = every class")
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    cooldown_s: float = Field(default=30.0, ge=0.0, description="per class, after a forward")
    rate_per_minute: float = Field(default=6.0, gt=0.0, description="global rate limit (token bucket)")
    burst: int = Field(default=2, ge=1, le=100)
    redact_classes: list[str] = Field(
        default_factory=list, description="blur these classes' boxes before a frame leaves the device"
    )


class ForwardingSettings(Model):
    """What ``PUT /v1/forwarding`` sets (every field optional there: the ones given are changed).

    ``check-once``: Trio pulls ``stream_url`` itself. ``frame``: a JPEG and the condition are posted as
    multipart to ``frame_url`` (absolute, or a path under ``base_url``), for cameras Trio cannot reach.
    ``{classes}`` in ``condition`` becomes the classes that triggered the forward, ``{camera}`` the name
    of the camera the frame came from (frame mode also sends it as the form field ``camera``)."""

    enabled: bool = False
    mode: ForwardMode = "check-once"
    base_url: str = TRIO_BASE_URL
    frame_url: str = "/check-frame"
    stream_url: str | None = None
    condition: str = "Is something unusual or unsafe happening near the detected {classes}?"
    timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    queue_size: int = Field(default=8, ge=1, le=1000)
    rules: ForwardingRules = Field(default_factory=ForwardingRules)


class ForwardingUpdate(Model):
    """The body of ``PUT /v1/forwarding``: any of the settings, and the Trio API key (stored in the
    agent home, mode 0600, never returned). ``api_key: ""`` deletes the stored key."""

    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false, "5" not 5

    enabled: bool | None = None
    mode: ForwardMode | None = None
    base_url: str | None = None
    frame_url: str | None = None
    stream_url: str | None = None
    condition: str | None = None
    timeout_s: float | None = Field(default=None, gt=0.0, le=120.0)
    queue_size: int | None = Field(default=None, ge=1, le=1000)
    rules: ForwardingRules | None = None
    api_key: str | None = Field(default=None, description="write-only")


class TrioError(Model):
    """Why a forward failed: Trio's own ``{"error": {code, message, remediation}}`` when it sent one,
    else ours (``timeout``, ``unreachable``, ``no_key``, ...)."""

    code: str
    message: str
    remediation: str


class ForwardResult(Model):
    """One forward (or ``POST /v1/forwarding/test``): what was sent and what came back."""

    ok: bool
    outcome: str = Field(description="ok, triggered, unauthorized, bad_request, rate_limited, timeout, ...")
    mode: ForwardMode
    camera: str | None = Field(default=None, description="the camera the forwarded frame came from")
    url: str | None = None
    http_status: int | None = None
    latency_ms: float | None = Field(default=None, description="round trip measured on the device")
    trio_latency_ms: float | None = Field(default=None, description="what Trio reported")
    payload_bytes: int = 0
    triggered: bool | None = None
    explanation: str | None = None
    retry_after_s: float | None = None
    error: TrioError | None = None
    ts: float = 0.0


class ForwardingStats(Model):
    queue_depth: int = 0
    queue_capacity: int = 0
    forwards: dict[str, int] = Field(default_factory=dict, description="by outcome")
    dropped: dict[str, int] = Field(
        default_factory=dict, description="by reason: queue_full, rate_limited, cooldown, backoff"
    )
    backoff_remaining_s: float = 0.0
    last: ForwardResult | None = None


class ForwardingState(ForwardingSettings):
    """``GET /v1/forwarding``: the settings, the key shown masked, and the counters."""

    api_key: str = Field(description="masked: 'not set', 'sk-…abcd (key file)', 'set (from $ENV)'")
    stats: ForwardingStats = Field(default_factory=ForwardingStats)


class ForwardTestRequest(Model):
    model_config = ConfigDict(strict=True)  # a request: 0 is not false, "5" is not 5
    condition: str | None = None
    timeout_s: float | None = Field(default=None, gt=0.0, le=60.0)
