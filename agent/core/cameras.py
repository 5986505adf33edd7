"""The cameras an agent runs: ``[[cameras]]`` in ``config.toml``, or ``--source`` as the one-camera form.

::

    [[cameras]]
    name = "dock-north"
    source = "rtsp://user:secret@10.0.0.21/stream1"
    conf = 0.4          # optional: this camera's confidence threshold (else the model's)
    enabled = true      # optional: false keeps the camera configured but not captured

A name is ``[a-z0-9-]{1,32}`` and unique on the device. A bad entry is one :class:`ConfigError` line
naming the camera and the key, and nothing starts: an agent never runs half-configured. Error lines
never repeat a source URI (it may carry a password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent.core.errors import AgentError

NAME_RE = re.compile(r"[a-z0-9-]{1,32}")
DEFAULT_CAMERA = "cam0"
_KEYS = ("name", "source", "conf", "enabled")


class CameraConfigError(AgentError):
    """A camera entry with a missing, unknown or wrong-typed key, or a bad or duplicate name."""

    status = 422


@dataclass(frozen=True, slots=True)
class CameraSpec:
    name: str
    source: str
    conf: float | None = None
    enabled: bool = True


def check_name(name: Any, where: str = "") -> str:
    """``name`` if it is a valid camera name, else CameraConfigError saying the rule."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 64 else "given"
        raise CameraConfigError(
            f"camera name {shown}{where} is not valid: use 1-32 characters of a-z, 0-9 and '-'"
        )
    return name


def parse_camera(entry: Any, *, where: str = "", index: int | None = None) -> CameraSpec:
    """One camera from a config table or an API body; ``where`` names the file in error lines."""
    label = f"camera #{index + 1}" if index is not None else "camera"
    if not isinstance(entry, dict):
        raise CameraConfigError(f"{label}{where} must be a table with name and source")
    if "name" not in entry:
        raise CameraConfigError(f"{label}{where} has no name: add name = \"cam-1\" (a-z, 0-9, '-')")
    name = check_name(entry["name"], where)
    label = f"camera {name!r}{where}"
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise CameraConfigError(f"{label}: unknown key {unknown[0]!r}; known keys: {', '.join(_KEYS)}")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise CameraConfigError(f"{label}: key 'source' must be a source URI string (e.g. rtsp://...)")
    conf = entry.get("conf")
    if conf is not None:
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0:
            raise CameraConfigError(f"{label}: key 'conf' must be a number between 0 and 1")
        conf = float(conf)
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise CameraConfigError(f"{label}: key 'enabled' must be true or false")
    return CameraSpec(name=name, source=source.strip(), conf=conf, enabled=enabled)


def parse_cameras(raw: Any, *, where: str = "") -> list[CameraSpec]:
    """The ``cameras`` list: every entry valid, names unique, at least one camera."""
    if not isinstance(raw, list):
        raise CameraConfigError(f"cameras{where} must be a list of tables ([[cameras]] in TOML)")
    if not raw:
        raise CameraConfigError(f"cameras{where} is empty: add a [[cameras]] entry or drop the key")
    specs: list[CameraSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        spec = parse_camera(entry, where=where, index=i)
        if spec.name in seen:
            raise CameraConfigError(
                f"camera {spec.name!r}{where}: key 'name' is used twice; names must be unique"
            )
        seen.add(spec.name)
        specs.append(spec)
    return specs
