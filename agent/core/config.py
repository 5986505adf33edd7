"""Agent settings: ``config.toml`` in the home, then ``FIELDTUI_AGENT_*`` variables, then flags.

Each layer overrides the one before, key by key. An example ``config.toml``::

    name = "dock-camera-3"
    host = "0.0.0.0"
    port = 8470
    source = "rtsp://camera.local/stream1"
    model = "/opt/models/yolo.onnx"
    tls = true
    mdns_interfaces = ["192.168.1.20"]

Several cameras are ``[[cameras]]`` tables (agent/core/cameras.py); without them the agent runs one
camera, ``source``, named ``camera`` (default ``cam0``). ``--source`` on the command line is the
one-camera shorthand and replaces the file's cameras.

Unknown top-level keys are an error (a typo should not be silently ignored); tables (``[forwarding]``
and the like) are kept in :attr:`AgentConfig.sections` for the modules that own them.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.cameras import DEFAULT_CAMERA, CameraConfigError, CameraSpec, check_name, parse_cameras
from agent.core.errors import AgentError
from agent.core.home import AgentHome, resolve_home
from fieldtui.protocol import DEFAULT_PORT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

ENV_PREFIX = "FIELDTUI_AGENT_"


class ConfigError(AgentError):
    """A setting with the wrong type or value, or an unreadable config file."""

    status = 422


@dataclass
class AgentConfig:
    """Everything ``fieldtui-agent serve`` needs to know; see the module docstring for the layers."""

    home: Path
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    name: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "fieldtui-agent")
    model: str | None = None
    backend: str = "onnxruntime"
    source: str = "demo:"
    tls: bool = False
    mdns: bool = True
    mdns_interfaces: list[str] | None = None  # None: every interface
    log_level: str = "INFO"
    threads: int | None = None  # inference intra-op threads; None: measured (agent/frames/thread_policy.py)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    camera: str = DEFAULT_CAMERA  # the one camera's name when ``cameras`` is not set
    cameras: list[CameraSpec] = field(default_factory=list)
    config_file: Path | None = None  # the file read (camera changes are saved back to it)
    pinned: frozenset[str] = frozenset()  # keys set by the environment or flags (they beat the file)

    def camera_specs(self) -> list[CameraSpec]:
        """The cameras to run: ``cameras``, or the one camera ``source`` named ``camera``."""
        return list(self.cameras) or [CameraSpec(name=self.camera, source=self.source)]

    @property
    def agent_home(self) -> AgentHome:
        return AgentHome(self.home)


# Keys a person may set, with the type each must have; ``home`` is chosen before the file is read.
_KEYS: dict[str, type] = {
    "host": str,
    "port": int,
    "name": str,
    "model": str,
    "backend": str,
    "source": str,
    "tls": bool,
    "mdns": bool,
    "mdns_interfaces": list,
    "log_level": str,
    "threads": int,
    "camera": str,
}
_KINDS = {str: "a string", int: "a whole number", bool: "true or false", list: "a list"}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _coerce(key: str, value: Any, origin: str) -> Any:
    """Check (and for environment strings, convert) one value; say where a bad one came from."""
    want = _KEYS[key]
    if isinstance(value, str) and origin.startswith("$"):
        text = value.strip()
        if want is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{origin}={value!r} is not a boolean; use 1/0, true/false, yes/no or on/off")
        if want is int:
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"{origin}={value!r} is not a whole number") from None
        if want is list:
            return [part.strip() for part in text.split(",") if part.strip()]
    if (want is int and isinstance(value, bool)) or not isinstance(value, want):
        raise ConfigError(f"{key} in {origin} must be {_KINDS[want]}, not {value!r}")
    if key == "port" and not 0 <= value <= 65535:
        raise ConfigError(f"port {value} in {origin} is out of range; use 0-65535 (0 picks a free port)")
    if key == "mdns_interfaces" and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"mdns_interfaces in {origin} must be a list of IP address strings")
    if key == "threads" and not 1 <= value <= 256:
        raise ConfigError(
            f"threads {value} in {origin} is out of range; use 1-256, or leave it out to let the agent measure"
        )
    if key == "log_level":
        value = value.upper()
        if value not in _LOG_LEVELS:
            raise ConfigError(f"log_level {value!r} in {origin} is not one of {', '.join(_LOG_LEVELS)}")
    if key == "camera":
        try:
            check_name(value, f" in {origin}")
        except CameraConfigError as err:
            raise ConfigError(str(err)) from None
    if key == "name" and not value.strip():
        raise ConfigError(f"name in {origin} is empty; give the device a name a technician will recognise")
    return value


def read_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (FileNotFoundError, NotADirectoryError):
        if required:
            raise ConfigError(f"config file {path} does not exist; create it or drop --config") from None
        return {}
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}; fix the file and start again") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None


def load_config(
    *,
    home: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Build the settings from the file, the environment and ``overrides`` (flags; None = not given)."""
    env = os.environ if env is None else env
    root = resolve_home(home) if home is not None else resolve_home(env.get(f"{ENV_PREFIX}HOME"))
    path = Path(config_file) if config_file else AgentHome(root).config_file
    data = read_config_file(path, required=config_file is not None)

    values: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    cameras: list[CameraSpec] = []
    for key, value in data.items():
        if key == "cameras":
            try:
                cameras = parse_cameras(value, where=f" in {path}")
            except CameraConfigError as err:
                raise ConfigError(str(err)) from None
        elif isinstance(value, dict):
            sections[key] = value
        elif key in _KEYS:
            values[key] = _coerce(key, value, str(path))
        else:
            known = ", ".join(sorted([*_KEYS, "cameras"]))
            raise ConfigError(f"unknown setting {key!r} in {path}; known settings: {known}")
    for key in _KEYS:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None and raw != "":
            values[key] = _coerce(key, raw, f"${ENV_PREFIX}{key.upper()}")
    if cameras and ("source" in data or "camera" in data):
        raise ConfigError(f"{path} sets both source/camera and [[cameras]]: keep one of them")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    if (overrides or {}).get("source") is not None:
        cameras = []  # --source is the one-camera shorthand: it replaces the file's cameras
    pinned = frozenset(
        k for k in _KEYS if env.get(ENV_PREFIX + k.upper()) or (overrides or {}).get(k) is not None
    )
    return AgentConfig(
        home=root, sections=sections, cameras=cameras, config_file=path, pinned=pinned, **values
    )
