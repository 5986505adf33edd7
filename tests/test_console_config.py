"""The console's saved devices: where they live, who can read them, and that writes are atomic."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fieldtui.config import ConsoleConfig, config_dir, default_record, parse_host
from fieldtui.errors import ConfigError, UnknownDevice
from fieldtui.protocol import DeviceRecord


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _record(**kw) -> DeviceRecord:
    base = {"id": "a" * 32, "name": "gate-3", "host": "192.0.2.10", "port": 8470, "origin": ["manual"]}
    return DeviceRecord(**{**base, **kw})


def test_config_dir_follows_override_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "override"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "override"
    monkeypatch.delenv("FIELDTUI_CONFIG_DIR")
    assert config_dir() == tmp_path / "xdg" / "fieldtui"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_dir() == tmp_path / "home" / ".config" / "fieldtui"


def test_saved_devices_are_private_and_round_trip(tmp_path):
    # A pre-existing, too-open directory is tightened too.
    (tmp_path / "cfg").mkdir(mode=0o755)
    config = ConsoleConfig(tmp_path / "cfg")
    config.save_device(_record(tls=True, tls_fingerprint="f" * 64), token="s3cret-token")

    assert _mode(config.dir) == 0o700
    assert _mode(config.path) == 0o600
    assert [p.name for p in config.dir.iterdir()] == ["devices.json"]  # no temp file left behind

    entry = ConsoleConfig(tmp_path / "cfg").find("gate-3")
    assert entry is not None
    assert entry.token == "s3cret-token"
    assert entry.device.tls_fingerprint == "f" * 64
    assert "s3cret-token" not in repr(entry)


@pytest.mark.parametrize(
    "needle", ["a" * 32, "gate-3", "GATE-3", "192.0.2.10", "192.0.2.10:8470", "http://192.0.2.10:8470"]
)
def test_find_by_id_name_host_or_url(tmp_path, needle):
    config = ConsoleConfig(tmp_path)
    config.save_device(_record(), token="t")
    config.save_device(_record(id="b" * 32, name="dock-1", host="192.0.2.11"), token="u")
    entry = config.find(needle)
    assert entry is not None and entry.device.name == "gate-3"


def test_find_unknown_and_ambiguous(tmp_path):
    config = ConsoleConfig(tmp_path)
    assert config.find("nowhere") is None
    config.save_device(_record(), token="t")
    config.save_device(_record(id="b" * 32, host="192.0.2.11"), token="u")  # same name, other device
    with pytest.raises(UnknownDevice, match="names 2 saved devices"):
        config.find("gate-3")
    assert config.find("192.0.2.11").device.id == "b" * 32


def test_save_replaces_by_id_and_keeps_the_token(tmp_path):
    config = ConsoleConfig(tmp_path)
    config.save_device(_record(), token="first")
    config.save_device(_record(host="192.0.2.99", version="0.2"))  # DHCP moved it; no new token given
    entries = config.load()
    assert len(entries) == 1
    assert entries[0].device.host == "192.0.2.99" and entries[0].token == "first"


def test_hand_added_device_becomes_the_paired_one(tmp_path):
    config = ConsoleConfig(tmp_path)
    config.save_device(_record(id=None), token="by-hand")
    config.save_device(_record(), token="paired")
    [entry] = config.load()
    assert entry.device.id == "a" * 32 and entry.token == "paired"


def test_remove(tmp_path):
    config = ConsoleConfig(tmp_path)
    config.save_device(_record(), token="t")
    assert config.remove("gate-3").device.name == "gate-3"
    assert config.load() == []
    with pytest.raises(UnknownDevice):
        config.remove("gate-3")


def test_refresh_seen_updates_addresses_but_never_the_pin_or_name(tmp_path):
    config = ConsoleConfig(tmp_path)
    config.save_device(_record(name="my name", tls=True, tls_fingerprint="a" * 64), token="t")
    seen = _record(
        name="advertised", host="192.0.2.50", tls=True, tls_fingerprint="b" * 64, model="v7", origin=["mdns"]
    )
    config.refresh_seen([seen])
    [entry] = config.load()
    assert entry.device.host == "192.0.2.50" and entry.device.model == "v7"
    assert entry.device.name == "my name"
    assert entry.device.tls_fingerprint == "a" * 64
    assert "mdns" in entry.device.origin and entry.token == "t"


def test_damaged_file_is_reported_not_overwritten(tmp_path):
    config = ConsoleConfig(tmp_path)
    config.path.write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        config.load()
    with pytest.raises(ConfigError):
        config.save_device(_record(), token="t")
    assert config.path.read_text() == "{not json"


def test_file_format_is_plain_json(tmp_path):
    config = ConsoleConfig(tmp_path)
    config.save_device(_record(), token="t")
    doc = json.loads(config.path.read_text())
    assert doc["version"] == 1 and doc["devices"][0]["device"]["name"] == "gate-3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gate-3.local", ("gate-3.local", None, None)),
        ("192.0.2.1:9000", ("192.0.2.1", 9000, None)),
        ("[fd00::1]:8470", ("fd00::1", 8470, None)),
        ("fd00::1", ("fd00::1", None, None)),
        ("https://192.0.2.1:8443", ("192.0.2.1", 8443, True)),
        ("http://gate-3", ("gate-3", None, False)),
    ],
)
def test_parse_host(text, expected):
    assert parse_host(text) == expected


@pytest.mark.parametrize("text", ["host:99999", "host:abc", "ftp://host", "[::1]:0"])
def test_parse_host_rejects_bad_input(text):
    with pytest.raises(UnknownDevice):
        parse_host(text)


def test_default_record_for_an_unsaved_url():
    rec = default_record("https://192.0.2.7")
    assert (rec.host, rec.port, rec.tls, rec.api_url) == ("192.0.2.7", 8470, True, "https://192.0.2.7:8470")
