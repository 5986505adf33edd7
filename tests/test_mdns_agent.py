"""The agent's mDNS advertisement, seen by a real zeroconf browser on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid

from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from agent.server.mdns import Advertiser, advertised_addresses, instance_name, txt_record
from fieldtui import __version__
from fieldtui.protocol import SERVICE_TYPE

LOOPBACK = ["127.0.0.1"]


class Watch:
    """A browser on loopback that records what happens to one instance name."""

    def __init__(self, name: str) -> None:
        self.name = f"{name}.{SERVICE_TYPE}"
        self.changes: list[ServiceStateChange] = []
        self.changed = asyncio.Event()

    async def __aenter__(self) -> Watch:
        self.zc = AsyncZeroconf(interfaces=LOOPBACK)

        def handler(zeroconf, service_type, name, state_change) -> None:
            if name == self.name:
                self.changes.append(state_change)
                self.changed.set()

        self.browser = AsyncServiceBrowser(self.zc.zeroconf, SERVICE_TYPE, handlers=[handler])
        return self

    async def wait_for(self, change: ServiceStateChange, timeout: float) -> None:
        async def seen() -> None:
            while change not in self.changes:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(seen(), timeout)

    async def txt(self) -> dict[str, str]:
        info = await self.zc.async_get_service_info(SERVICE_TYPE, self.name, timeout=3000)
        assert info is not None, f"{self.name} not resolvable"
        self.info = info
        return {k.decode(): (v or b"").decode() for k, v in info.properties.items()}

    async def __aexit__(self, *exc: object) -> None:
        await self.browser.async_cancel()
        await self.zc.async_close()


async def test_a_serving_agent_is_found_with_its_txt_fields_and_says_goodbye(start_agent):
    name = f"mdns-test-{uuid.uuid4().hex[:8]}"
    async with Watch(name) as watch:
        agent = await asyncio.to_thread(
            start_agent, None, "--name", name, "--mdns-interface", "127.0.0.1", mdns=True
        )
        await watch.wait_for(ServiceStateChange.Added, 3.0)
        txt = await watch.txt()
        device_id = (agent.home / "device_id").read_text().strip()
        assert txt == {
            "id": device_id,
            "ver": __version__,
            "api": "v1",
            "model": "tiny",
            "backend": "onnxruntime",
            "tls": "0",
            "health": "ok",
        }
        port = int(agent.url.rsplit(":", 1)[1])
        assert watch.info.port == port
        assert watch.info.parsed_addresses() == ["127.0.0.1"]
        assert await asyncio.to_thread(agent.stop) == 0
        await watch.wait_for(ServiceStateChange.Removed, 5.0)  # goodbye packets, not a TTL expiry


async def test_tls_fingerprint_is_in_the_txt_record(start_agent):
    name = f"mdns-tls-{uuid.uuid4().hex[:8]}"
    async with Watch(name) as watch:
        agent = await asyncio.to_thread(
            start_agent, None, "--name", name, "--mdns-interface", "127.0.0.1", "--tls", mdns=True
        )
        await watch.wait_for(ServiceStateChange.Added, 3.0)
        txt = await watch.txt()
        runtime = (agent.home / "agent.json").read_text()
        assert len(txt["tls"]) == 64 and txt["tls"] in runtime
        assert agent.url.startswith("https://")


async def test_swapping_the_model_updates_the_txt_record(inproc_agent, tmp_path):
    """The wiring `serve` uses: a model swap in the service re-announces TXT `model`."""
    from agent.core.config import load_config
    from agent.inference.detector import Detector
    from agent.server.app import _advertise

    second = tmp_path / "second-model.onnx"
    agent = await asyncio.to_thread(inproc_agent)
    second.write_bytes(agent.service.pipeline.detector.path.read_bytes())
    name = f"mdns-swap-{uuid.uuid4().hex[:8]}"
    config = load_config(
        home=agent.home, env={}, overrides={"name": name, "host": "127.0.0.1", "mdns_interfaces": LOOPBACK}
    )
    async with Watch(name) as watch:
        advertiser = await _advertise(agent.service, config, 4242)
        try:
            await watch.wait_for(ServiceStateChange.Added, 3.0)
            assert (await watch.txt())["model"] == "tiny"
            new = await asyncio.to_thread(Detector.load, second)
            old = await asyncio.to_thread(agent.service.swap_detector, new)
            old.close()
            await watch.wait_for(ServiceStateChange.Updated, 3.0)
            assert (await watch.txt())["model"] == "second-model"
        finally:
            await advertiser.stop()


async def test_the_health_verdict_is_in_the_txt_record_and_follows_it(inproc_agent, tmp_path):
    """TXT ``health`` is the agent's one verdict (GET /v1/health), re-announced when its level changes."""
    from agent.core.config import load_config
    from agent.server.app import _advertise

    agent = await asyncio.to_thread(inproc_agent)
    name = f"mdns-health-{uuid.uuid4().hex[:8]}"
    config = load_config(
        home=agent.home, env={}, overrides={"name": name, "host": "127.0.0.1", "mdns_interfaces": LOOPBACK}
    )
    async with Watch(name) as watch:
        advertiser = await _advertise(agent.service, config, 4243)
        try:
            await watch.wait_for(ServiceStateChange.Added, 3.0)
            assert (await watch.txt())["health"] == "ok"
            await asyncio.to_thread(agent.service.stop_pipeline)
            await watch.wait_for(ServiceStateChange.Updated, 5.0)
            assert (await watch.txt())["health"] == "degraded"
            assert agent.service.health().status == "degraded"
        finally:
            await advertiser.stop()


def test_names_and_txt_entries_fit_the_dns_limits():
    assert instance_name("dock.cam.3") == "dock-cam-3"
    assert len(instance_name("é" * 100).encode()) <= 63
    txt = txt_record({"model": "m" * 400, "tls": None})
    assert len(b"model=" + txt["model"].encode()) == 255
    assert txt["tls"] == ""


def test_advertised_addresses():
    assert advertised_addresses("127.0.0.1", None) == ["127.0.0.1"]
    assert advertised_addresses("0.0.0.0", ["127.0.0.1", "::1"]) == ["127.0.0.1"]
    everything = advertised_addresses("0.0.0.0", None)
    assert all(not a.startswith("127.") for a in everything)


async def test_an_advertiser_without_an_address_does_not_stop_the_agent(caplog):
    adv = Advertiser(name="x", device_id="0" * 32, port=1, host="0.0.0.0", txt={}, interfaces=["::1"])
    assert adv.addresses == []
    assert await adv.start() is False
    assert "console can still add this device by address" in caplog.text
    await adv.stop()  # safe without a registration
