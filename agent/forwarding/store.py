"""Where forwarding settings and the Trio API key live, and how the key is shown.

``forwarding.json`` in the agent home holds the settings (``PUT /v1/forwarding`` writes it); until one
exists, a ``[forwarding]`` table in ``config.toml`` gives the defaults. The key comes from
``$FIELDTUI_AGENT_TRIO_API_KEY`` when set (it wins, like every environment setting), else from the key
file ``trio_api_key`` (mode 0600). The key is never returned: :meth:`ForwardingStore.masked` is all
anyone sees of it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from agent.core.errors import AgentError
from agent.core.home import AgentHome
from agent.forwarding.trio import KEY_ENV
from fieldtui.protocol import ForwardingRules, ForwardingSettings, ForwardingUpdate, first_error
from fieldtui.protocol.files import atomic_write

log = logging.getLogger("fieldtui.agent.forwarding")

SETTINGS_FILE = "forwarding.json"
KEY_FILE = "trio_api_key"


class ForwardingError(AgentError):
    """Forwarding settings that cannot work."""

    status = 422


# RFC 6750's b64token: what an Authorization: Bearer header can carry (ASCII, no spaces).
_KEY_FORM = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_http_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number or out of range
    except ValueError:
        raise ForwardingError(f"{name} has an invalid port; e.g. https://trio.machinefi.com/api") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForwardingError(f"{name} {value!r} is not an http(s) URL; e.g. https://trio.machinefi.com/api")
    if parts.username or parts.password:
        raise ForwardingError(f"{name} must not carry credentials; the API key goes in api_key")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ForwardingError(
            f"{name} must be https:// (the API key travels with every forward); plain http is accepted "
            "only for this device itself (127.0.0.1, ::1, localhost)"
        )


def endpoint(settings: ForwardingSettings) -> tuple[str, ...]:
    """Where the key is sent: the origin (scheme://host:port) of base_url, and of frame_url when it is
    an absolute URL. The key is bound to these; changing them drops it."""
    urls = [settings.base_url]
    if settings.frame_url.startswith(("http://", "https://")):
        urls.append(settings.frame_url)
    origins = []
    for url in urls:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origins.append(f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}")
    return tuple(dict.fromkeys(origins))


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


def check_classes(rules: ForwardingRules, known: Iterable[str] | None) -> None:
    """Rule class names must be classes the serving model detects (``known``; None: not checked, e.g.
    before a model is loaded): a misspelt class would silently never forward or never blur."""
    if known is None:
        return
    names = list(dict.fromkeys(known))
    for field in ("classes", "redact_classes"):
        unknown = [c for c in getattr(rules, field) if c not in names]
        if unknown:
            shown = ", ".join(repr(c[:40]) for c in unknown[:3]) + (" …" if len(unknown) > 3 else "")
            raise ForwardingError(
                f"rules.{field}: {shown} {'is not a class' if len(unknown) == 1 else 'are not classes'} "
                f"of the serving model; its classes are {', '.join(names) or '(none)'} (nothing was changed)"
            )


class ForwardingStore:
    """Settings file, key file and key source of one agent home.

    The key is bound to its endpoint (:func:`endpoint`): a change of base_url (or of an absolute
    frame_url) through the API deletes the key file unless the same request gives a key, and the key of
    ``$FIELDTUI_AGENT_TRIO_API_KEY`` is sent only to the endpoint config.toml names (the built-in Trio URL
    without one), so a token holder cannot point forwarding at a host of theirs and collect the key."""

    def __init__(self, home: AgentHome, env: Mapping[str, str] | None = None) -> None:
        self.settings_file = home.root / SETTINGS_FILE
        self.key_file = home.root / KEY_FILE
        self._env = os.environ if env is None else env
        self.env_endpoint: tuple[str, ...] = endpoint(ForwardingSettings())

    def load(self, defaults: dict[str, Any] | None = None) -> ForwardingSettings:
        """The saved settings; else ``defaults`` (config.toml's [forwarding]); else the built-in ones."""
        try:
            configured: ForwardingSettings | None = validate(
                ForwardingSettings.model_validate(defaults or {})
            )
            problem = None
        except (ValidationError, ForwardingError) as err:
            configured, problem = None, _first(err)
        if configured is not None:
            self.env_endpoint = endpoint(configured)
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
        if configured is None:
            raise ForwardingError(f"[forwarding] in config.toml: {problem}")
        return configured

    def save(self, settings: ForwardingSettings) -> None:
        atomic_write(self.settings_file, settings.model_dump_json(indent=2) + "\n")

    def apply(self, current: ForwardingSettings, update: ForwardingUpdate) -> ForwardingSettings:
        """``current`` with the fields ``update`` gives, validated and saved; the key, when given, goes
        to the key file; a new endpoint without a key deletes the key file (first: a crash in between
        loses the key, never sends it elsewhere). Nothing is written if anything is wrong."""
        changes = {k: getattr(update, k) for k in update.model_fields_set if k != "api_key"}
        try:
            merged = ForwardingSettings.model_validate({**current.model_dump(), **changes})
        except ValidationError as err:
            raise ForwardingError(f"forwarding settings: {_first(err)}") from None
        validate(merged)
        key = update.api_key.strip() if update.api_key is not None else None
        if key and not _KEY_FORM.fullmatch(key):
            raise ForwardingError(
                "api_key must be the key as Trio issued it: one word of ASCII letters, digits and "
                "- . _ ~ + / (the key was not saved, nothing was changed)"
            )
        if key is None and endpoint(merged) != endpoint(current) and self.key_file.exists():
            key = ""  # bound to the old endpoint: never sent to the new one
        if key is not None:
            self.set_key(key)
        self.save(merged)
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

    def _env_key(self, settings: ForwardingSettings | None) -> str | None:
        """The environment's key, when it may go to ``settings``' endpoint (None: any check skipped)."""
        env = self._env.get(KEY_ENV, "").strip()
        if not env or (settings is not None and endpoint(settings) != self.env_endpoint):
            return None
        return env

    def key(self, settings: ForwardingSettings | None = None) -> str | None:
        """The key to send to ``settings``' endpoint: the environment's when bound to it, else the file's."""
        env = self._env_key(settings)
        if env:
            return env
        try:
            return self.key_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def masked(self, settings: ForwardingSettings | None = None) -> str:
        """How the key is shown: where it comes from and at most its first 3 and last 4 characters."""
        if self._env_key(settings):
            return f"set (from ${KEY_ENV})"
        key = self.key(settings)
        if not key:
            if self._env.get(KEY_ENV, "").strip():
                return f"not set for this endpoint (${KEY_ENV} goes only to {', '.join(self.env_endpoint)})"
            return "not set"
        shown = f"{key[:3]}…{key[-4:]}" if len(key) >= 16 else "set"
        return f"{shown} (key file)"


def _first(err: ValidationError | AgentError) -> str:
    """One line for a settings error, naming the field; never the value (it could be the key)."""
    return first_error(err) if isinstance(err, ValidationError) else str(err)
