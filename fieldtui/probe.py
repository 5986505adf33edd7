"""Finding agents where mDNS cannot reach: sweep an address range for the agent's port.

Customer networks often drop multicast (client isolation, VLANs, IGMP snooping), so mDNS sees nothing.
:func:`probe` connects to the agent's port on every address of the ranges the technician names (or the
laptop's own directly connected subnets, :func:`own_subnets`) and asks the public ``GET /v1/health``,
which names the device (``id``, ``name``). At most ``concurrency`` connections are open at once and each
host gets ``connect_timeout`` to accept, so a /24 is answered in a few seconds.

Guard rails (:func:`parse_range`): a literal IPv4 or IPv6 range, at most :data:`MAX_ADDRESSES` (a /22)
unless forced, never more than :data:`MAX_FORCED` (a /16), never multicast, reserved or "this network"
space. Nothing else is ever probed. Plain asyncio and httpx: the CLI and the device list share it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fieldtui.errors import ConsoleError
from fieldtui.protocol import DEFAULT_PORT, DeviceRecord, HealthReport

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("fieldtui.probe")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CONCURRENCY = 128
CONNECT_TIMEOUT_S = 0.75  # a host on the LAN accepts in milliseconds; a silent address costs this much
ANSWER_TIMEOUT_S = 2.0  # an agent that accepted gets this long to answer /v1/health
MAX_ADDRESSES = 1024  # a /22 (or an IPv6 /118) without --force
MAX_FORCED = 65536  # a /16 even with --force: beyond that a sweep takes minutes and looks like a scan
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _size_word(n: int) -> str:
    return f"{n:,} addresses"


def parse_range(
    text: str, *, force: bool = False, larger: str = "add --force if you really mean it"
) -> Network:
    """``text`` as a network to probe, or a ConsoleError that is one line saying what to type.

    A bare address is a one-address range; host bits are allowed (``10.0.5.7/24`` is 10.0.5.0/24), as
    a technician often types their own address with its prefix.
    """
    raw = text.strip()
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        shown = raw if raw.isprintable() and len(raw) <= 60 else repr(raw[:60])
        raise ConsoleError(
            f"--probe {shown}: not an address range; give one like 10.0.5.0/24, 192.168.1.7 or fd00::/120"
        ) from None
    size = net.num_addresses
    if size > MAX_FORCED:
        smallest = "/16" if net.version == 4 else "/112"
        raise ConsoleError(
            f"--probe {net}: {_size_word(size)} is too many to probe, even with --force; "
            f"at most a {smallest} ({_size_word(MAX_FORCED)}): name the devices' own subnet"
        )
    if not net.is_loopback and (
        net.is_multicast or net.is_reserved or net.is_unspecified or net.overlaps(_THIS_NETWORK)
    ):
        raise ConsoleError(
            f"--probe {net}: multicast, reserved or unspecified addresses hold no agent; "
            "give the devices' subnet, e.g. 10.0.5.0/24"
        )
    if isinstance(net, ipaddress.IPv6Network) and net.is_link_local:
        raise ConsoleError(
            f"--probe {net}: IPv6 link-local needs an interface scope; probe the IPv4 or a global IPv6 range"
        )
    if size > MAX_ADDRESSES and not force:
        largest = "/22" if net.version == 4 else "/118"
        raise ConsoleError(
            f"--probe {net}: {_size_word(size)} is more than a {largest} ({_size_word(MAX_ADDRESSES)}); "
            f"name a smaller range, or {larger}"
        )
    return net


def parse_ports(ports: Iterable[int | str] | None) -> list[int]:
    """The agent's default port, then any others given (each once, 1 to 65535)."""
    out = [DEFAULT_PORT]
    for value in ports or ():
        text = str(value).strip()
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ConsoleError(f"--port {text!r}: give a port from 1 to 65535 (the agent's default is 8470)")
        if int(text) not in out:
            out.append(int(text))
    return out


def addresses(networks: Iterable[Network]) -> list[str]:
    """Every address to probe, in order, each once; network and broadcast addresses skipped."""
    seen: dict[str, None] = {}
    for net in networks:
        hosts = net.hosts() if net.num_addresses > 2 else iter(net)
        for ip in hosts:
            seen.setdefault(str(ip), None)
    return list(seen)


@dataclass(frozen=True)
class Subnet:
    """A directly connected subnet of this machine, as proposed for a probe."""

    interface: str
    address: str  # this machine's address on it
    network: Network  # what to probe: the subnet, or the /22 around ``address`` when it is larger
    whole: Network  # the subnet as configured

    def label(self) -> str:
        part = f" (the /22 around it; the subnet is {self.whole})" if self.network != self.whole else ""
        return f"{self.network} on {self.interface} ({self.address}){part}"


def own_subnets() -> list[Subnet]:
    """This machine's directly connected IPv4 subnets (loopback and link-local left out), from ifaddr."""
    import ifaddr

    out: list[Subnet] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):  # IPv6: a /64 cannot be swept; name a smaller range by hand
                continue
            address = ipaddress.ip_address(ip.ip)
            if address.is_loopback or address.is_link_local:
                continue
            whole = ipaddress.ip_network(f"{ip.ip}/{ip.network_prefix}", strict=False)
            small = whole.num_addresses <= MAX_ADDRESSES
            net = whole if small else ipaddress.ip_network(f"{ip.ip}/22", strict=False)
            out.append(Subnet(adapter.nice_name, ip.ip, net, whole))
    return out


@dataclass
class ProbeReport:
    """What a sweep found, and what it cost."""

    ranges: list[str]
    ports: list[int]
    probed: int  # addresses
    devices: list[DeviceRecord] = field(default_factory=list)
    elapsed_s: float = 0.0
    peak_open: int = 0  # most connections open at once (never above the concurrency limit)

    def summary(self) -> str:
        ports = ", ".join(map(str, self.ports))
        found = len(self.devices)
        return (
            f"probe of {', '.join(self.ranges)} on port {ports}: {self.probed} addresses in "
            f"{self.elapsed_s:.1f} s, {found} agent{'s' if found != 1 else ''} found"
        )


class Prober:
    """One sweep's connections: at most ``concurrency`` open at once, none kept alive afterwards."""

    def __init__(
        self,
        concurrency: int = DEFAULT_CONCURRENCY,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        answer_timeout: float = ANSWER_TIMEOUT_S,
    ) -> None:
        if concurrency < 1:
            raise ConsoleError("the probe's concurrency must be at least 1")
        self.concurrency = concurrency
        self.connect_timeout = connect_timeout
        self.answer_timeout = answer_timeout
        self.open_now = 0
        self.peak_open = 0

    def _client(self, tls: bool) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            # verify=False only to read who answers over HTTPS: the record keeps no certificate,
            # so nothing learnt here is trusted (the pin comes from pairing, as for mDNS).
            verify=not tls,
            timeout=httpx.Timeout(self.answer_timeout, connect=self.connect_timeout, pool=None),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=0),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment must never see the sweep
        )

    async def run(self, networks: Sequence[Network], ports: Sequence[int]) -> ProbeReport:
        targets = addresses(networks)
        report = ProbeReport([str(n) for n in networks], list(ports), len(targets))
        started = time.monotonic()
        # A fixed pool of workers pulling from one lazy queue: at most ``concurrency`` connections,
        # and a forced /16 costs no more memory than a /24.
        queue = ((host, port) for host in targets for port in ports)
        found: list[DeviceRecord] = []
        async with self._client(tls=False) as plain, self._client(tls=True) as tls:

            async def worker() -> None:
                for host, port in queue:
                    self.open_now += 1
                    self.peak_open = max(self.peak_open, self.open_now)
                    try:
                        record = await self._ask(plain, tls, host, port)
                    finally:
                        self.open_now -= 1
                    if record is not None:
                        found.append(record)

            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(targets) * len(ports)))))
        order = {host: i for i, host in enumerate(targets)}
        report.devices = sorted(found, key=lambda d: (order[d.host], d.port))
        report.elapsed_s = time.monotonic() - started
        report.peak_open = self.peak_open
        return report

    async def _ask(
        self, plain: httpx.AsyncClient, tls: httpx.AsyncClient, host: str, port: int
    ) -> DeviceRecord | None:
        import httpx

        url_host = f"[{host}]" if ":" in host else host
        for client, scheme in ((plain, "http"), (tls, "https")):
            try:
                resp = await client.get(f"{scheme}://{url_host}:{port}/v1/health")
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                return None  # nothing listens there (or nothing answers): the common case
            except httpx.HTTPError as err:
                # Something accepted and then hung up: an agent with TLS drops a plain-HTTP request.
                log.debug("probe %s://%s:%d: %s", scheme, url_host, port, err)
                continue
            if resp.status_code != 200:
                return None
            try:
                health = HealthReport.model_validate_json(resp.content)
            except ValueError:
                return None  # a web server, but not a fieldtui agent
            return DeviceRecord(
                id=health.id,
                name=health.name or host,
                host=host,
                port=port,
                addresses=[host],
                tls=scheme == "https",
                version=health.version,
                origin=["probe"],
                last_seen=time.time(),
            )
        return None


async def probe(
    networks: Sequence[Network],
    ports: Sequence[int] = (DEFAULT_PORT,),
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> ProbeReport:
    """Sweep ``networks`` (already checked by :func:`parse_range`) on ``ports``; see the module docstring."""
    return await Prober(concurrency, connect_timeout).run(networks, ports)
