"""The console's saved devices and their secrets.

One file, ``devices.json``, in the XDG config dir (``$XDG_CONFIG_HOME/fieldtui``, else
``~/.config/fieldtui``; ``FIELDTUI_CONFIG_DIR`` overrides it, which the tests use). It holds each
paired or hand-added device with its API token and TLS pin, so it is mode 0600 in a 0700 directory and
is replaced atomically (temp file, fsync, rename): a crash leaves the old file or the new one, never half
of either.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fieldtui.errors import ConfigError, ConsoleError, UnknownDevice
from fieldtui.protocol import DEFAULT_PORT, DeviceRecord
from fieldtui.protocol.files import atomic_write

FILE_NAME = "devices.json"
FORMAT_VERSION = 1


def config_dir() -> Path:
    """Where the console keeps its files (not created here)."""
    override = os.environ.get("FIELDTUI_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "fieldtui"


class SavedDevice(BaseModel):
    """A device the technician paired or added, with its secrets."""

    model_config = ConfigDict(extra="ignore")

    device: DeviceRecord
    # The token never appears in a repr, a log line or a --json output.
    token: str | None = Field(default=None, repr=False)
    # The technician's own labels (`fieldtui tag HOST entrance,line-2`); `fieldtui rollout --tag` picks by them.
    tags: list[str] = []

    @property
    def key(self) -> str:
        return device_key(self.device)


class _ConfigFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = FORMAT_VERSION
    devices: list[SavedDevice] = []


def device_key(record: DeviceRecord) -> str:
    """Identity used to merge records: the device id when known, else ``host:port``."""
    return record.id or f"{record.host}:{record.port}"


def parse_host(text: str) -> tuple[str, int | None, bool | None]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a URL into (host, port, tls).

    ``port`` and ``tls`` are ``None`` when the text does not say.
    """
    text = text.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            hostname, port = parts.hostname, parts.port
        except ValueError as err:  # "http://[::1" (no closing bracket), a port out of range
            raise UnknownDevice(f"{text!r} is not an agent URL ({err}): use http(s)://HOST:PORT") from None
        if parts.scheme not in ("http", "https") or not hostname:
            raise UnknownDevice(f"{text!r} is not an agent URL: use http://HOST:PORT or https://HOST:PORT")
        return _host(text, hostname), port, parts.scheme == "https"
    if text.startswith("["):  # [v6] or [v6]:port
        host, closed, rest = text[1:].partition("]")
        if not closed or not _is_ip(host):
            raise UnknownDevice(f"{text!r} is not an address: write an IPv6 address as [fe80::1]:8470")
        return host, _port(text, rest.lstrip(":")) if rest else None, None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return _host(text, host), _port(text, port), None
    return _host(text, text), None, None


HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])  # fe80::1%eth0: a zone is fine
    except ValueError:
        return False
    return True


def check_host(host: str) -> str:
    """``host`` when it is a host name, an SSH alias or an IP address; UnknownDevice otherwise."""
    return _host(host, host.strip())


def _host(text: str, host: str) -> str:
    """``host`` if it is a host name or an IP address; UnknownDevice saying what to type otherwise (a
    name with shell characters, an emoji, spaces must not reach DNS, httpx or a log line unchecked)."""
    if _is_ip(host) or HOSTNAME_RE.fullmatch(host):
        return host
    shown = text if len(text) <= 80 else text[:80] + "…"
    raise UnknownDevice(
        f"{shown!r} is not a saved device, host name or address: use a name from `fieldtui discover`, "
        "HOST, HOST:PORT, [IPv6]:PORT or http(s)://HOST:PORT"
    )


def _port(text: str, port: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UnknownDevice(f"{text!r} has a bad port: expected HOST:PORT with a port from 1 to 65535")
    return int(port)


class ConsoleConfig:
    """Read and change the saved devices. Every change is written at once, atomically."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or config_dir()
        self.path = self.dir / FILE_NAME

    # --- reading ---------------------------------------------------------------------------------

    def load(self) -> list[SavedDevice]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as err:
            raise ConfigError(f"cannot read {self.path}: {err.strerror}") from None
        try:
            return _ConfigFile.model_validate(json.loads(raw)).devices
        except (json.JSONDecodeError, ValidationError) as err:
            first = str(err).splitlines()[0]
            raise ConfigError(
                f"{self.path} is damaged ({first}): fix it or move it away and pair the devices again"
            ) from None

    def find(self, text: str) -> SavedDevice | None:
        """The saved device named by ``text``: its id, name, host, ``host:port`` or URL."""
        saved = self.load()
        needle = text.strip()
        for entry in saved:
            if entry.device.id and entry.device.id == needle:
                return entry
        by_name = [e for e in saved if e.device.name.casefold() == needle.casefold()]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            ids = ", ".join(e.key for e in by_name)
            raise UnknownDevice(f"{needle!r} names {len(by_name)} saved devices ({ids}): use the id instead")
        try:
            host, port, _ = parse_host(needle)
        except UnknownDevice:
            return None
        matches = [
            e
            for e in saved
            if (e.device.host == host or host in e.device.addresses)
            and (port is None or e.device.port == port)
        ]
        return matches[0] if len(matches) == 1 else None

    # --- changing --------------------------------------------------------------------------------

    def save_device(self, record: DeviceRecord, token: str | None = None) -> SavedDevice:
        """Add or replace a device (matched by id, else host:port), keeping its token if none given."""
        saved = self.load()
        key = device_key(record)
        old = next((e for e in saved if e.key == key or _same_endpoint(e.device, record)), None)
        entry = SavedDevice(
            device=record,
            token=token if token is not None else (old.token if old else None),
            tags=old.tags if old else [],
        )
        saved = [e for e in saved if e is not old] + [entry]
        self._write(saved)
        return entry

    def set_tags(self, text: str, tags: Iterable[str]) -> SavedDevice:
        """Replace the tags of the saved device named by ``text`` (checked with :func:`check_tags`)."""
        entry = self.find(text)
        if entry is None:
            raise UnknownDevice(f"no saved device matches {text!r}: `fieldtui discover` lists them")
        entry.tags = check_tags(tags)
        saved = self.load()
        self._write([entry if e.key == entry.key else e for e in saved])
        return entry

    def tagged(self, tag: str) -> list[SavedDevice]:
        """The saved devices carrying ``tag``, in the order they were saved."""
        return [e for e in self.load() if tag in e.tags]

    def remove(self, text: str) -> SavedDevice:
        entry = self.find(text)
        if entry is None:
            raise UnknownDevice(f"no saved device matches {text!r}: `fieldtui discover` lists them")
        self._write([e for e in self.load() if e.key != entry.key])
        return entry

    def refresh_seen(self, records: Iterable[DeviceRecord]) -> None:
        """Update saved devices with what discovery just saw (addresses, model, ...), never the secrets.

        The TLS pin and the name given by the technician are kept: an mDNS answer is not a root of
        trust, pairing over SSH is.
        """
        saved = self.load()
        seen = {device_key(r): r for r in records}
        changed = False
        for entry in saved:
            fresh = seen.get(entry.key)
            if fresh is None:
                continue
            update = {
                "host": fresh.host,
                "port": fresh.port,
                "addresses": fresh.addresses,
                "version": fresh.version,
                "model": fresh.model,
                "backend": fresh.backend,
                "tls": fresh.tls or entry.device.tls,
                "last_seen": fresh.last_seen or time.time(),
            }
            if "mdns" in fresh.origin and "mdns" not in entry.device.origin:
                update["origin"] = [*entry.device.origin, "mdns"]
            new = entry.device.model_copy(update=update)
            if new != entry.device:
                entry.device = new
                changed = True
        if changed:
            self._write(saved)

    def _write(self, devices: list[SavedDevice]) -> None:
        body = _ConfigFile(devices=devices).model_dump_json(indent=2) + "\n"
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)  # mkdir's mode is filtered by the umask, and the dir may pre-exist
            atomic_write(self.path, body.encode("utf-8"), mode=0o600)
        except OSError as err:
            raise ConfigError(f"cannot write {self.path}: {err.strerror}; nothing was changed") from None


TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def check_tags(tags: Iterable[str]) -> list[str]:
    """Tags as saved: each 1-32 letters, digits, '.', '_' or '-'; duplicates dropped, order kept.
    ConsoleError naming the first bad one otherwise (nothing is saved then)."""
    out: list[str] = []
    for raw in tags:
        tag = raw.strip()
        if not TAG_RE.fullmatch(tag):
            shown = tag if len(tag) <= 40 else tag[:40] + "…"
            raise ConsoleError(
                f"tag {shown!r} is not allowed: use 1-32 letters, digits, '.', '_' or '-' (like entrance or line-2)"
            )
        if tag not in out:
            out.append(tag)
    return out


def _same_endpoint(a: DeviceRecord, b: DeviceRecord) -> bool:
    # A device first added by hand (no id) and later paired (with id) is the same entry.
    return (a.id is None or b.id is None) and a.host == b.host and a.port == b.port


def default_record(host_text: str) -> DeviceRecord:
    """A record for an address that is not saved: default port, TLS only if the URL says https."""
    host, port, tls = parse_host(host_text)
    return DeviceRecord(name=host, host=host, port=port or DEFAULT_PORT, tls=bool(tls), origin=["manual"])
