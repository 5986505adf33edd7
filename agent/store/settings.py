"""The ``[models]`` table of the agent's ``config.toml``: store size, upload limit, activation checks,
probation and pull mode. Example::

    [models]
    keep = 5                    # versions kept on the device (the oldest inactive ones are pruned)
    max_upload_mb = 2048        # a bigger upload is refused before a byte of it is read (413)
    probation_s = 60            # after an activation, watch the new model this long (0: no probation)
    latency_factor = 3.0        # a new model may be at most this many times slower than the current one
    latency_slack_ms = 5.0      # ... plus this much, so timer noise on tiny models is not a failure
    confidence_ratio = 0.5      # probation fails when confidence falls below this share of the old model's
    health_frames = 5           # live frames the health check runs each model on
    registry = "http://192.168.1.10:8471"   # pull mode: poll this registry for updates
    registry_poll_s = 300
    registry_key = "/etc/fieldtui/registry-signing.pub"  # take only offers signed by this Ed25519 key
                                # (a path to `fieldtui registry keygen`'s .pub file, or its one line)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from agent.core.config import ConfigError

MB = 1 << 20


@dataclass(frozen=True)
class ModelSettings:
    keep: int = 5
    max_upload_bytes: int = 2048 * MB
    probation_s: float = 60.0
    probation_min_frames: int = 10
    latency_factor: float = 3.0
    latency_slack_ms: float = 5.0
    confidence_ratio: float = 0.5
    health_frames: int = 5
    registry: str | None = None
    registry_poll_s: float = 300.0
    registry_key: bytes | None = None  # the raw 32-byte Ed25519 public key offers must be signed by

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> ModelSettings:
        """Settings from the ``[models]`` table; ConfigError naming the key for a wrong one."""
        data = dict(section or {})
        values: dict[str, Any] = {}
        if "max_upload_mb" in data:
            values["max_upload_bytes"] = int(_number(data.pop("max_upload_mb"), "max_upload_mb", low=1) * MB)
        known = {f.name for f in fields(cls)} - {"max_upload_bytes"}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(
                    f"unknown setting {key!r} in [models]; known: {', '.join(sorted(known | {'max_upload_mb'}))}"
                )
            if key == "registry":
                if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                    raise ConfigError(f"[models] registry must be an http:// or https:// URL, not {value!r}")
                values[key] = value.rstrip("/")
            elif key == "registry_key":
                values[key] = _public_key(value)
            elif key in ("keep", "probation_min_frames", "health_frames"):
                values[key] = int(_number(value, key, low=1, whole=True))
            elif key == "confidence_ratio":
                values[key] = _number(value, key, low=0.0, high=1.0)
            elif key == "latency_factor":
                values[key] = _number(value, key, low=1.0)
            elif key == "registry_poll_s":
                values[key] = _number(value, key, low=0.1)
            else:
                values[key] = _number(value, key, low=0.0)
        return cls(**values)


def _public_key(value: Any) -> bytes:
    """The raw Ed25519 public key from ``registry_key``: the key's base64 line itself, or an absolute path
    to a file holding that line (``fieldtui registry keygen``'s ``.pub``) or a PEM public key."""
    what = (
        "[models] registry_key must be the base64 public key from `fieldtui registry keygen` "
        "or the absolute path of its .pub file"
    )
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what}, not {value!r}")
    raw = _b64_key(value.strip())
    if raw is not None:
        return raw
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{what}; {value!r} is neither")
    try:
        text = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"[models] registry_key: cannot read {path}: {err.strerror}") from None
    raw = _b64_key(text.decode("ascii", "replace").strip())
    if raw is not None:
        return raw
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"[models] registry_key: {path} holds no Ed25519 public key; {what}")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64_key(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _number(value: Any, key: str, *, low: float, high: float | None = None, whole: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (whole and not isinstance(value, int))
    ):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"[models] {key} must be {kind}, not {value!r}")
    if value < low or (high is not None and value > high):
        limits = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigError(f"[models] {key} = {value!r} is out of range; use a value {limits}")
    return float(value)
