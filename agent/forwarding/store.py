"""Where forwarding settings and the Trio API key live, and how the key is shown.

``forwarding.json`` in the agent home holds the settings (``PUT /v1/forwarding`` writes it); until one
exists, a ``[forwarding]`` table in ``config.toml`` gives the defaults. The key comes from
``$FIELDTUI_AGENT_TRIO_API_KEY`` when set (it wins, like every environment setting), else from the key
file ``trio_api_key`` (mode 0600). The key is never returned: :meth:`ForwardingStore.masked` is all
anyone sees of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from agent.core.errors import AgentError
from agent.core.home import AgentHome, atomic_write
from agent.forwarding.trio import KEY_ENV
from fieldtui.protocol import ForwardingSettings, ForwardingUpdate

log = logging.getLogger("fieldtui.agent.forwarding")

SETTINGS_FILE = "forwarding.json"
KEY_FILE = "trio_api_key"


class ForwardingError(AgentError):
    """Forwarding settings that cannot work."""

    status = 422


def _check_http_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForwardingError(f"{name} {value!r} is not an http(s) URL; e.g. https://trio.machinefi.com/api")
    if parts.username or parts.password:
        raise ForwardingError(f"{name} must not carry credentials; the API key goes in api_key")


def validate(settings: ForwardingSettings) -> ForwardingSettings:
    """Checks a model cannot express: URL forms, and what the chosen mode needs."""
    _check_http_url("base_url", settings.base_url)
    if settings.frame_url.startswith(("http://", "https://")):
        _check_http_url("frame_url", settings.frame_url)
    elif not settings.frame_url.strip():
        raise ForwardingError("frame_url is empty; give a path under base_url (e.g. /check-frame) or a URL")
    if settings.enabled and settings.mode == "check-once" and not (settings.stream_url or "").strip():
        raise ForwardingError(
            "check-once mode needs stream_url (a live stream Trio can reach); set it, or use mode 'frame' "
            "for a camera Trio cannot reach"
        )
    if not settings.condition.strip():
        raise ForwardingError("condition is empty; say what Trio should look for, e.g. 'is anyone hurt?'")
    return settings


class ForwardingStore:
    """Settings file, key file and key source of one agent home."""

    def __init__(self, home: AgentHome, env: Mapping[str, str] | None = None) -> None:
        self.settings_file = home.root / SETTINGS_FILE
        self.key_file = home.root / KEY_FILE
        self._env = os.environ if env is None else env

    def load(self, defaults: dict[str, Any] | None = None) -> ForwardingSettings:
        """The saved settings; else ``defaults`` (config.toml's [forwarding]); else the built-in ones."""
        try:
            text = self.settings_file.read_text()
        except FileNotFoundError:
            text = None
        if text is not None:
            try:
                return validate(ForwardingSettings.model_validate_json(text))
            except (ValidationError, ForwardingError) as err:
                log.error("%s is not valid (%s); forwarding starts disabled", self.settings_file, _first(err))
                return ForwardingSettings()
        try:
            return validate(ForwardingSettings.model_validate(defaults or {}))
        except ValidationError as err:
            raise ForwardingError(f"[forwarding] in config.toml: {_first(err)}") from None

    def save(self, settings: ForwardingSettings) -> None:
        atomic_write(self.settings_file, settings.model_dump_json(indent=2) + "\n")

    def apply(self, current: ForwardingSettings, update: ForwardingUpdate) -> ForwardingSettings:
        """``current`` with the fields ``update`` gives, validated and saved; the key, when given, goes
        to the key file. Nothing is written if anything is wrong."""
        changes = {k: getattr(update, k) for k in update.model_fields_set if k != "api_key"}
        try:
            merged = ForwardingSettings.model_validate({**current.model_dump(), **changes})
        except ValidationError as err:
            raise ForwardingError(f"forwarding settings: {_first(err)}") from None
        validate(merged)
        key = update.api_key
        if key is not None and key.strip() and (len(key.split()) != 1 or not key.isprintable()):
            raise ForwardingError(
                "api_key must be one word without spaces or line breaks (the key was not saved)"
            )
        self.save(merged)
        if key is not None:
            self.set_key(key.strip())
        return merged

    # --- the key ---------------------------------------------------------------------------------

    def set_key(self, key: str) -> None:
        """Store ``key`` (mode 0600); an empty one deletes the key file."""
        if key:
            atomic_write(self.key_file, key + "\n", mode=0o600)
            log.info("Trio API key stored in %s", self.key_file.name)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.key_file.unlink()
            log.info("Trio API key file removed")

    def key(self) -> str | None:
        env = self._env.get(KEY_ENV, "").strip()
        if env:
            return env
        try:
            return self.key_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def masked(self) -> str:
        """How the key is shown: where it comes from and at most its first 3 and last 4 characters."""
        if self._env.get(KEY_ENV, "").strip():
            return f"set (from ${KEY_ENV})"
        key = self.key()
        if not key:
            return "not set"
        shown = f"{key[:3]}…{key[-4:]}" if len(key) >= 16 else "set"
        return f"{shown} (key file)"


def _first(err: ValidationError | AgentError) -> str:
    """One line for a settings error, naming the field; never the value (it could be the key)."""
    if isinstance(err, ValidationError):
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "body"
        return f"{where}: {e['msg']}"
    return str(err)
