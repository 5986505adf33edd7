"""The agent home: where the token, TLS material, state database, config and logs live.

``$FIELDTUI_AGENT_HOME`` (or ``--home``), default ``/var/lib/fieldtui-agent`` as root, else
``~/.local/share/fieldtui-agent``::

    token, tls/            0600 (the directory 0700)
    device_id              stable identity of this device
    config.toml            optional settings (see agent/core/config.py)
    state.db               SQLite (WAL): jobs, and later activations, benchmarks, audit
    agent.json             runtime file of a serving agent: pid, api_url, tls_fingerprint
    agent.log              rotating log (redacted)

Every file the agent writes here goes through :func:`atomic_write`: a temporary file beside the target,
fsync, rename, fsync of the directory. A crash leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from agent.core.errors import AgentError
from fieldtui.protocol.files import atomic_write, fsync_dir

HOME_ENV = "FIELDTUI_AGENT_HOME"


class HomeError(AgentError):
    """The agent home cannot be created, read or written."""

    status = 500


def default_home() -> Path:
    """``/var/lib/fieldtui-agent`` for root (the systemd service), else the user's XDG data dir."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/fieldtui-agent")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "fieldtui-agent"


def resolve_home(flag: str | os.PathLike[str] | None = None) -> Path:
    """The home chosen by ``--home``, else ``$FIELDTUI_AGENT_HOME``, else :func:`default_home`."""
    chosen = flag or os.environ.get(HOME_ENV) or default_home()
    return Path(chosen).expanduser().absolute()


def user_path(text: str | os.PathLike[str], error: type[AgentError] = AgentError) -> Path:
    """``text`` as a path with a leading ``~`` or ``~user`` expanded; ``error`` (422) saying so when that
    user or home does not exist (``Path.expanduser`` raises RuntimeError there, which is no answer)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise error(
            f"{str(text).split('/', 1)[0]!r} in {str(text)!r} names no user with a home on this device; "
            "give an absolute path",
            status=422,
        ) from None


class AgentHome:
    """Paths inside one agent home, and the small files that live there."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.token_file = self.root / "token"
        self.device_id_file = self.root / "device_id"
        self.tls_dir = self.root / "tls"
        self.config_file = self.root / "config.toml"
        self.state_db = self.root / "state.db"
        self.runtime_file = self.root / "agent.json"
        self.log_file = self.root / "agent.log"
        self.models_dir = self.root / "models"
        self.engines_dir = self.root / "engines"

    def __repr__(self) -> str:
        return f"AgentHome({str(self.root)!r})"

    def ensure(self) -> AgentHome:
        """Create the home (mode 0700: it holds the token) if it does not exist yet."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise HomeError(
                f"cannot create the agent home {self.root}: {err.strerror}; "
                f"choose another with --home or {HOME_ENV}"
            ) from None
        if not os.access(self.root, os.W_OK):
            raise HomeError(
                f"the agent home {self.root} is not writable by this user; "
                f"run as its owner or choose another with --home or {HOME_ENV}"
            )
        return self

    def device_id(self) -> str:
        """The stable id of this device: made once (uuid4 hex), then read back on every start."""
        try:
            value = self.device_id_file.read_text().strip()
        except FileNotFoundError:
            value = ""
        if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
            return value
        value = uuid.uuid4().hex
        atomic_write(self.device_id_file, value + "\n")
        return value

    # --- runtime file ---------------------------------------------------------------------------

    def write_runtime(self, info: dict[str, Any]) -> None:
        atomic_write(self.runtime_file, json.dumps(info, indent=2) + "\n")

    def read_runtime(self) -> dict[str, Any] | None:
        """The runtime file of a serving agent, or None when no agent is serving from this home."""
        try:
            info = json.loads(self.runtime_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        pid = info.get("pid")
        if not isinstance(pid, int) or not _pid_alive(pid):
            return None  # left behind by a killed agent
        return info

    def remove_runtime(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.runtime_file.unlink()
        fsync_dir(self.root)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
