"""fieldtui.fleet, the service behind the TUI's device list, against a real agent and a real config file."""

from __future__ import annotations

import os
import socket
import stat
import time
import uuid

import pytest

from fieldtui.config import ConsoleConfig
from fieldtui.errors import ConsoleError
from fieldtui.fleet import Fleet


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_add_checks_the_token_and_saves_the_device_0600(agent_inproc, tmp_path):
    config = ConsoleConfig(tmp_path / "console")
    fleet = Fleet(config, mdns=False)
    await fleet.start()
    try:
        host, port = _host_port(agent_inproc.url)
        added = await fleet.add(host, port, f"  {agent_inproc.token}  ")
        assert added.warning is None
        device = added.device
        assert device.id == agent_inproc.service.device_id and device.version and device.name
        assert stat.S_IMODE(os.stat(config.path).st_mode) == 0o600
        [listed] = fleet.devices()
        assert listed.id == device.id and fleet.token(listed) == agent_inproc.token
        probe = await fleet.probe(listed)
        assert probe.health.status in ("ok", "degraded") and probe.status is not None
        assert fleet.client(listed) is fleet.client(listed)  # one link per device, reused
    finally:
        await fleet.close()


async def test_a_refused_token_saves_nothing_and_says_so(agent_inproc, tmp_path):
    config = ConsoleConfig(tmp_path / "console")
    fleet = Fleet(config, mdns=False)
    host, port = _host_port(agent_inproc.url)
    with pytest.raises(ConsoleError, match="refused this token.*nothing was saved"):
        await fleet.add(host, port, "not-the-token")
    assert config.load() == [] and fleet.devices() == []
    await fleet.close()


async def test_an_unreachable_or_invalid_host_is_not_saved_and_says_so_at_once(tmp_path):
    config = ConsoleConfig(tmp_path / "console")
    fleet = Fleet(config, mdns=False)
    with pytest.raises(ConsoleError, match="connection refused.*nothing was saved"):
        await fleet.add("127.0.0.1", _closed_port(), "some-token")
    t0 = time.monotonic()
    with pytest.raises(ConsoleError, match="is not a saved device, host name or address"):
        await fleet.add("💥", 8470, "some-token")
    assert time.monotonic() - t0 < 1.0  # refused before any lookup, not after a minute of waiting
    assert config.load() == [] and fleet.devices() == []
    await fleet.close()


@pytest.mark.parametrize(
    ("host", "port", "token", "fingerprint", "message"),
    [
        ("", 8470, "t", None, "host is empty"),
        ("10.0.0.9", 70000, "t", None, "port 70000 is out of range"),
        ("10.0.0.9", 8470, " ", None, "token is empty"),
        ("10.0.0.9", 8470, "t", "abc", "TLS fingerprint: a TLS fingerprint is the SHA-256"),
    ],
)
async def test_bad_input_is_one_clear_line_and_changes_nothing(
    tmp_path, host, port, token, fingerprint, message
):
    config = ConsoleConfig(tmp_path / "console")
    fleet = Fleet(config, mdns=False)
    with pytest.raises(ConsoleError, match=message):
        await fleet.add(host, port, token, fingerprint)
    assert not config.path.exists()


async def test_mdns_browsing_starts_and_stops_and_says_what_to_check(tmp_path, monkeypatch):
    monkeypatch.setattr("fieldtui.fleet.HINTS_AFTER_S", 0.0)
    service_type = f"_ft{uuid.uuid4().hex[:8]}._tcp.local."  # nobody advertises this one
    fleet = Fleet(ConsoleConfig(tmp_path / "console"), interfaces=["127.0.0.1"], service_type=service_type)
    await fleet.start(on_change=lambda: None)
    try:
        assert fleet.devices() == []
        hints = fleet.hints()
        assert hints and hints[0].startswith("mDNS found no fieldtui agent on 127.0.0.1")
    finally:
        await fleet.close()
