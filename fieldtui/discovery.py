"""Finding agents on the LAN: mDNS browsing merged with saved and hand-added devices.

:class:`Browser` keeps a zeroconf ``AsyncServiceBrowser`` on ``_fieldtui._tcp.local.`` running and turns
each resolved service into a :class:`~fieldtui.protocol.DeviceRecord` (TXT ``id``, ``ver``, ``api``,
``model``, ``backend``, ``tls``). A device that goes away stays listed with ``lost=True``: a technician
wants to see that the camera at gate 3 vanished, not have it silently drop off the list.
:func:`discover` is the one-shot form the CLI uses; when mDNS finds nothing it says what to check.
Where multicast is blocked, it also sweeps the address ranges the technician names
(:mod:`fieldtui.probe`); what the probe finds joins the same records, marked with origin ``probe``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from fieldtui.config import device_key
from fieldtui.errors import ConsoleError
from fieldtui.protocol import SERVICE_TYPE, DeviceRecord, DiscoveryResult

if TYPE_CHECKING:  # zeroconf is imported when browsing starts: after the device list is on screen
    from zeroconf import ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    from fieldtui.probe import Network

log = logging.getLogger("fieldtui.discovery")

DEFAULT_TIMEOUT = 3.0
RESOLVE_TIMEOUT_MS = 3000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --- records --------------------------------------------------------------------------------------


def txt_fields(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in properties.items():
        name = key.decode("utf-8", "replace").lower()
        out[name] = value.decode("utf-8", "replace") if value is not None else ""
    return out


def _tls_from_txt(value: str | None) -> tuple[bool, str | None]:
    """TXT ``tls`` is the certificate fingerprint, or a flag ("1"/"0") from agents that omit it."""
    text = (value or "").strip().lower().replace(":", "")
    if _HEX64.match(text):
        return True, text
    return text in ("1", "true", "yes", "on"), None


def _address_rank(address: str) -> tuple[int, str]:
    ip = ipaddress.ip_address(address.split("%")[0])
    # Routable IPv4 first (works everywhere), link-local and IPv6 later (need a scope on the laptop).
    return (0 if ip.version == 4 and not ip.is_link_local else 1 if ip.version == 4 else 2, address)


def record_from_info(info: AsyncServiceInfo, now: float | None = None) -> DeviceRecord | None:
    """A resolved mDNS service as a device record; ``None`` when it has no address or port yet."""
    addresses = sorted(info.parsed_scoped_addresses(), key=_address_rank)
    if not addresses or not info.port:
        return None
    txt = txt_fields(info.properties or {})
    tls, fingerprint = _tls_from_txt(txt.get("tls"))
    name = info.name.removesuffix("." + info.type)
    return DeviceRecord(
        id=txt.get("id") or None,
        name=name,
        host=addresses[0],
        port=info.port,
        addresses=addresses,
        tls=tls,
        tls_fingerprint=fingerprint,
        version=txt.get("ver") or None,
        model=txt.get("model") or None,
        backend=txt.get("backend") or None,
        origin=["mdns"],
        last_seen=now or time.time(),
    )


def _same_device(a: DeviceRecord, b: DeviceRecord) -> bool:
    if a.id and b.id:
        return a.id == b.id
    hosts_a = {a.host, *a.addresses}
    return a.port == b.port and (b.host in hosts_a or bool(hosts_a & set(b.addresses)))


def merge_probed(mdns: Iterable[DeviceRecord], probed: Iterable[DeviceRecord]) -> list[DeviceRecord]:
    """mDNS records with the probe's: one record per device, marked ``probe`` when the probe saw it.

    mDNS knows more (model, backend, the advertised certificate), so for a device both found it stays
    the base; the probe adds its address and, from an agent without an mDNS ``id``, the id.
    """
    out = list(mdns)
    for p in probed:
        i = next((i for i, m in enumerate(out) if _same_device(m, p)), None)
        if i is None:
            out.append(p)
            continue
        m = out[i]
        out[i] = m.model_copy(
            update={
                "id": m.id or p.id,
                "addresses": list(dict.fromkeys([*m.addresses, *p.addresses])),
                "origin": list(dict.fromkeys([*m.origin, "probe"])),
                "lost": False,
                "last_seen": max(filter(None, (m.last_seen, p.last_seen)), default=None),
            }
        )
    return out


def merge(mdns: Iterable[DeviceRecord], saved: Iterable[DeviceRecord]) -> list[DeviceRecord]:
    """One list from live mDNS records and saved ones, matched by id, else by address and port.

    A saved device that was seen over mDNS before and is not now is marked ``lost``. For a match, the
    saved name and TLS pin win (the technician's choice and the pairing's trust), mDNS gives the rest.
    """
    out: list[DeviceRecord] = []
    live = list(mdns)
    for record in saved:
        match = next((m for m in live if _same_device(record, m)), None)
        origin = list(dict.fromkeys([*record.origin, "saved"]))
        if match is None:
            out.append(record.model_copy(update={"origin": origin, "lost": record.lost or "mdns" in origin}))
            continue
        live.remove(match)
        out.append(
            match.model_copy(
                update={
                    "id": match.id or record.id,
                    "name": record.name,
                    "tls_fingerprint": record.tls_fingerprint,  # never trust an advertised certificate
                    "tls": match.tls or record.tls,
                    "origin": list(dict.fromkeys([*origin, *match.origin])),
                    "lost": match.lost,
                }
            )
        )
    out.extend(live)
    return sorted(out, key=lambda r: (r.lost, r.name.casefold(), device_key(r)))


# --- interfaces and hints -------------------------------------------------------------------------


def local_addresses() -> list[tuple[str, list[str]]]:
    """(interface name, addresses) for every local interface that has one."""
    out = []
    import ifaddr

    for adapter in ifaddr.get_adapters():
        ips = [ip.ip if isinstance(ip.ip, str) else ip.ip[0] for ip in adapter.ips]
        if ips:
            out.append((adapter.nice_name, ips))
    return out


def check_interfaces(interfaces: Sequence[str] | None) -> None:
    """Raise a clear error for an --interface address this machine does not have."""
    if not interfaces:
        return
    known = {ip for _, ips in local_addresses() for ip in ips}
    for address in interfaces:
        if address not in known:
            listing = "; ".join(f"{name} {', '.join(ips)}" for name, ips in local_addresses())
            raise ConsoleError(f"no local interface has address {address}: this machine has {listing}")


def empty_hints(timeout: float, interfaces: Sequence[str] | None) -> list[str]:
    """What to check when mDNS answered nothing, most likely causes first."""
    where = f"on {', '.join(interfaces)}" if interfaces else "on any interface"
    ifaces = local_addresses()
    listing = "; ".join(f"{name} {', '.join(ips)}" for name, ips in ifaces) or "none"
    non_loopback = [
        ip for _, ips in ifaces for ip in ips if not ipaddress.ip_address(ip.split("%")[0]).is_loopback
    ]
    hints = [f"mDNS found no fieldtui agent {where} in {timeout:g} s."]
    if not non_loopback:
        hints.append("This machine has no network address besides loopback: join the devices' network first.")
    hints += [
        "Agent not running? On the device: `systemctl status fieldtui-agent` (or `fieldtui-agent serve`).",
        "Multicast blocked? Guest Wi-Fi and client isolation drop mDNS: probe the devices' subnet, "
        "`fieldtui discover --probe 10.0.5.0/24`, or use the device's address directly, "
        "`fieldtui status HOST` or `fieldtui add HOST --token T`.",
        f"Wrong interface? Local interfaces: {listing}. Pick one with --interface ADDRESS.",
        "Firewall? mDNS needs UDP port 5353 in and out on this machine (e.g. `sudo ufw allow 5353/udp`).",
    ]
    return hints


def pin_hints(devices: Iterable[DeviceRecord], mdns: Iterable[DeviceRecord]) -> list[str]:
    """A device advertising another certificate than the one pinned at pairing deserves a word."""
    advertised = {device_key(m): m.tls_fingerprint for m in mdns if m.tls_fingerprint}
    out = []
    for d in devices:
        fp = advertised.get(device_key(d))
        if d.tls_fingerprint and fp and fp != d.tls_fingerprint:
            out.append(
                f"{d.name} advertises certificate {fp[:8]}…, not the pinned {d.tls_fingerprint[:8]}…: "
                f"re-pair with `fieldtui pair {d.host}` if the device was reinstalled."
            )
    return out


# --- browsing -------------------------------------------------------------------------------------


class Browser:
    """A running mDNS browse; ``devices()`` is the current view, lost devices included.

    ``on_change()`` is called (on the event loop) whenever a device appears, changes or goes away.
    """

    def __init__(
        self,
        interfaces: Sequence[str] | None = None,
        on_change: Callable[[], None] | None = None,
        *,
        service_type: str = SERVICE_TYPE,
    ) -> None:
        self.interfaces = list(interfaces) if interfaces else None
        self.service_type = service_type  # tests browse a type of their own, safe from other agents
        self._on_change = on_change
        self._records: dict[str, DeviceRecord] = {}  # by mDNS instance name
        self._tasks: set[asyncio.Task[None]] = set()
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None

    async def start(self) -> None:
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

        check_interfaces(self.interfaces)
        if self.interfaces:
            v6 = any(ipaddress.ip_address(a).version == 6 for a in self.interfaces)
            self._azc = AsyncZeroconf(
                interfaces=self.interfaces, ip_version=IPVersion.All if v6 else IPVersion.V4Only
            )
        else:
            self._azc = AsyncZeroconf(interfaces=InterfaceChoice.All)
        self._browser = AsyncServiceBrowser(
            self._azc.zeroconf, [self.service_type], handlers=[self._on_service]
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._azc is not None:
            await self._azc.async_close()
        self._browser = self._azc = None

    async def __aenter__(self) -> Browser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def devices(self) -> list[DeviceRecord]:
        return list(self._records.values())

    async def settle(self, timeout: float = 1.0) -> None:
        """Wait for resolutions already under way (at most ``timeout`` seconds)."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)

    def _on_service(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            old = self._records.get(name)
            if old is not None and not old.lost:
                self._records[name] = old.model_copy(update={"lost": True})
                self._changed()
            return
        task = asyncio.ensure_future(self._resolve(zeroconf, service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
            log.info("mDNS service %s did not resolve in %d ms", name, RESOLVE_TIMEOUT_MS)
            return
        record = record_from_info(info)
        if record is not None and record != self._records.get(name):
            self._records[name] = record
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


async def discover(
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interfaces: Sequence[str] | None = None,
    saved: Iterable[DeviceRecord] = (),
    service_type: str = SERVICE_TYPE,
    probe: Sequence[Network] = (),
    probe_ports: Sequence[int] = (),
) -> tuple[DiscoveryResult, list[DeviceRecord]]:
    """Browse for ``timeout`` seconds (sweeping ``probe`` ranges meanwhile, if any); return the merged
    result and the live records (mDNS, then the probe's)."""

    async def browse() -> list[DeviceRecord]:
        async with Browser(interfaces, service_type=service_type) as browser:
            await asyncio.sleep(timeout)
            await browser.settle()
            return [d for d in browser.devices() if not d.lost]

    report = None
    if probe:
        from fieldtui.probe import probe as sweep

        found, report = await asyncio.gather(browse(), sweep(probe, probe_ports))
        probed = report.devices
    else:
        found, probed = await browse(), []
    live = merge_probed(found, probed)
    devices = merge(live, list(saved))
    hints = empty_hints(timeout, interfaces) if not live else []
    if report is not None:
        summary = report.summary()
        hints.insert(0, summary[0].upper() + summary[1:] + ".")
    hints += pin_hints(devices, found)
    return DiscoveryResult(devices=devices, hints=hints), live
