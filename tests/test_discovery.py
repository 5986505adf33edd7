"""Discovery: real zeroconf on loopback, merging with saved devices, and hints when nothing answers.

Services here are registered under a service type made for each test, so agents that other tests run
on this machine at the same time can neither be found nor hide a "nothing found".
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from fieldtui.discovery import Browser, _tls_from_txt, check_interfaces, discover, merge, pin_hints
from fieldtui.errors import ConsoleError
from fieldtui.protocol import DeviceRecord

FP = "c0ffee" + "0" * 58


@pytest.fixture
def service_type() -> str:
    return f"_ft{uuid.uuid4().hex[:10]}._tcp.local."


async def _advertise(service_type: str, name: str, port: int, txt: dict[str, str]):
    azc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        service_type,
        f"{name}.{service_type}",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=port,
        properties=txt,
        server=f"{name}.local.",
    )
    await azc.async_register_service(info)
    return azc, info


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for mDNS"
        await asyncio.sleep(0.05)


async def test_browser_resolves_txt_fields_and_marks_a_vanished_device_lost(service_type):
    txt = {
        "id": "d" * 32,
        "ver": "0.1.0",
        "api": "v1",
        "model": "demo-v1",
        "backend": "onnxruntime",
        "tls": FP,
    }
    azc, info = await _advertise(service_type, "gate-3", 18470, txt)
    changes = []
    try:
        async with Browser(
            ["127.0.0.1"], on_change=lambda: changes.append(1), service_type=service_type
        ) as b:
            await _until(lambda: len(b.devices()) == 1)
            [rec] = b.devices()
            assert (rec.id, rec.name, rec.host, rec.port) == ("d" * 32, "gate-3", "127.0.0.1", 18470)
            assert (rec.version, rec.model, rec.backend) == ("0.1.0", "demo-v1", "onnxruntime")
            assert rec.tls and rec.tls_fingerprint == FP and rec.origin == ["mdns"] and not rec.lost
            assert rec.api_url == "https://127.0.0.1:18470"

            await azc.async_unregister_service(info)  # the agent's goodbye on shutdown
            await _until(lambda: b.devices()[0].lost)
            assert [d.id for d in b.devices()] == ["d" * 32]  # still listed, marked lost
            assert len(changes) >= 2
    finally:
        await azc.async_close()


async def test_nothing_found_says_what_to_check(service_type):
    saved = [
        DeviceRecord(id="a" * 32, name="seen-before", host="192.0.2.5", origin=["manual", "mdns"]),
        DeviceRecord(name="by-hand", host="192.0.2.6", origin=["manual"]),
    ]
    result, found = await discover(0.5, interfaces=["127.0.0.1"], saved=saved, service_type=service_type)
    assert found == []
    by_name = {d.name: d for d in result.devices}
    assert by_name["seen-before"].lost and not by_name["by-hand"].lost
    text = "\n".join(result.hints)
    assert "mDNS found no fieldtui agent on 127.0.0.1" in text
    assert "systemctl status fieldtui-agent" in text
    assert "client isolation" in text and "UDP port 5353" in text
    assert "127.0.0.1" in result.hints[next(i for i, h in enumerate(result.hints) if "Wrong interface" in h)]


async def test_discover_finds_an_advertised_device_without_hints(service_type):
    azc, _ = await _advertise(service_type, "dock-1", 18471, {"id": "e" * 32, "tls": "0"})
    try:
        result, found = await discover(1.5, interfaces=["127.0.0.1"], service_type=service_type)
    finally:
        await azc.async_close()
    assert [d.id for d in found] == ["e" * 32] and not found[0].tls
    assert result.hints == [] and result.devices[0].name == "dock-1"


def test_unknown_interface_is_a_clear_error():
    with pytest.raises(
        ConsoleError, match=r"no local interface has address 203\.0\.113\.9: this machine has .*127\.0\.0\.1"
    ):
        check_interfaces(["203.0.113.9"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (FP, (True, FP)),
        (FP.upper(), (True, FP)),
        ("0", (False, None)),
        ("", (False, None)),
        ("1", (True, None)),
    ],
)
def test_tls_txt_field(value, expected):
    assert _tls_from_txt(value) == expected


def _mdns(**kw) -> DeviceRecord:
    base = {"id": "a" * 32, "name": "advertised", "host": "192.0.2.20", "origin": ["mdns"], "last_seen": 5.0}
    return DeviceRecord(**{**base, **kw})


def test_merge_prefers_the_saved_name_and_pin_and_live_addresses():
    saved = DeviceRecord(
        id="a" * 32, name="Gate 3", host="192.0.2.9", tls=True, tls_fingerprint=FP, origin=["manual"]
    )
    live = _mdns(tls=True, tls_fingerprint="b" * 64, model="v7")
    [merged] = merge([live], [saved])
    assert (merged.name, merged.host, merged.model) == ("Gate 3", "192.0.2.20", "v7")
    assert merged.tls_fingerprint == FP  # an advertised certificate never replaces the pinned one
    assert merged.origin == ["manual", "saved", "mdns"] and not merged.lost
    [hint] = pin_hints([merged], [live])
    assert "not the pinned c0ffee00…" in hint and "fieldtui pair 192.0.2.20" in hint


def test_merge_matches_a_hand_added_device_by_address_and_keeps_strangers():
    by_hand = DeviceRecord(name="by-hand", host="192.0.2.20", origin=["manual"])
    stranger = _mdns(id="f" * 32, name="stranger", host="192.0.2.30")
    merged = merge([_mdns(), stranger], [by_hand])
    assert [(d.name, d.id) for d in merged] == [("by-hand", "a" * 32), ("stranger", "f" * 32)]
    assert merged[1].origin == ["mdns"]
