"""The console's fleet: every device it knows, and a link to each one, for the TUI.

A :class:`Fleet` merges mDNS (a running :class:`~fieldtui.discovery.Browser`) with the saved and
hand-added devices of :class:`~fieldtui.config.ConsoleConfig`, hands out one
:class:`~fieldtui.client.AgentClient` per device with its saved token and TLS pin, probes a device for
the device list (public health first, then the status when a token is saved), and adds a device by
hand. Plain asyncio, no Textual: screens take a Fleet by injection, and tests give them a fake one with
the same methods instead of sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fieldtui.config import ConsoleConfig, SavedDevice, check_host, device_key
from fieldtui.discovery import Browser, empty_hints, merge, merge_probed
from fieldtui.errors import AgentClientError, AgentUnauthorized, AgentUnreachable, ConsoleError
from fieldtui.protocol import (
    DEFAULT_PORT,
    SERVICE_TYPE,
    CameraList,
    DeviceRecord,
    HealthReport,
    PipelineStatus,
)

if TYPE_CHECKING:  # httpx is imported on the first link, not before the device list is on screen
    from fieldtui.client import AgentClient
    from fieldtui.probe import Network, ProbeReport

log = logging.getLogger("fieldtui.fleet")

HINTS_AFTER_S = 3.0  # mDNS gets this long before the console says what to check
ADD_CHECK_S = 5.0  # adding a device by hand: the check of its token answers within this, whatever happens


@dataclass(frozen=True)
class Probe:
    """One look at a device for the device list."""

    health: HealthReport
    status: PipelineStatus | None  # None when no token is saved: health is public, status is not
    cameras: CameraList | None = None  # None without a token, or from an agent without /v1/cameras


@dataclass(frozen=True)
class Added:
    device: DeviceRecord
    warning: str | None = None  # saved without checking, and why


class Fleet:
    """See the module docstring. ``await start(on_change)`` once; ``await close()`` at the end."""

    def __init__(
        self,
        config: ConsoleConfig | None = None,
        *,
        mdns: bool = True,
        interfaces: Sequence[str] | None = None,
        service_type: str = SERVICE_TYPE,
        timeout: float = 5.0,
    ) -> None:
        self.config = config or ConsoleConfig()
        self.mdns = mdns
        self.interfaces = list(interfaces) if interfaces else None
        self.service_type = service_type
        self.timeout = timeout
        self._browser: Browser | None = None
        self._mdns_error: str | None = None
        self._started_at: float | None = None
        self._saved: list[SavedDevice] = []
        self._clients: dict[str, tuple[tuple[str, str | None, str | None], AgentClient]] = {}
        self._retired: list[AgentClient] = []
        self._probed: list[DeviceRecord] = []  # what the last sweeps found (where mDNS cannot reach)

    async def start(self, on_change: Callable[[], None] | None = None) -> None:
        """Read the saved devices and start browsing mDNS; ``on_change`` runs when mDNS sees a change."""
        self._started_at = time.monotonic()
        self._saved = self.config.load()
        if not self.mdns:
            return
        browser = Browser(self.interfaces, on_change, service_type=self.service_type)
        try:
            await browser.start()
        except (
            OSError,
            ConsoleError,
        ) as err:  # no multicast route, a bad --interface: saved devices still work
            self._mdns_error = f"mDNS browsing is off ({err}); saved devices still work"
            log.warning("%s", self._mdns_error)
            await browser.close()
            return
        self._browser = browser

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        clients = [c for _, c in self._clients.values()] + self._retired
        self._clients.clear()
        self._retired.clear()
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)

    # --- what the device list shows ---------------------------------------------------------------

    def devices(self) -> list[DeviceRecord]:
        """Saved devices merged with mDNS; lost ones stay, marked ``lost``. Saved ones learn new addresses."""
        found = merge_probed(self._browser.devices() if self._browser is not None else [], self._probed)
        live = [d for d in found if not d.lost]
        if live:
            self.config.refresh_seen(live)
        self._saved = self.config.load()
        return merge(found, [s.device for s in self._saved])

    async def sweep(self, networks: Sequence[Network], ports: Sequence[int]) -> ProbeReport:
        """Probe address ranges (checked by :func:`fieldtui.probe.parse_range`) for agents; what answers
        joins :meth:`devices`, marked ``probe``, until the console closes."""
        from fieldtui.probe import probe

        report = await probe(networks, ports)
        keep = [p for p in self._probed if not any(device_key(p) == device_key(d) for d in report.devices)]
        self._probed = keep + report.devices
        return report

    def hints(self) -> list[str]:
        """What to check when mDNS has found nothing (empty before it had a fair chance)."""
        if self._mdns_error:
            return [self._mdns_error]
        if not self.mdns or self._started_at is None:
            return []
        waited = time.monotonic() - self._started_at
        if waited < HINTS_AFTER_S or (self._browser is not None and self._browser.devices()):
            return []
        return empty_hints(waited, self.interfaces)

    def is_saved(self, device: DeviceRecord) -> bool:
        return any(s.key == device_key(device) for s in self._saved)

    def forget(self, device: DeviceRecord) -> SavedDevice:
        """Remove a saved device with its token and TLS pin (UnknownDevice when it is not saved). An
        agent still announcing itself over mDNS shows up again, unpaired."""
        entry = self.config.remove(device_key(device))
        self._saved = self.config.load()
        return entry

    def token(self, device: DeviceRecord) -> str | None:
        key = device_key(device)
        entry = next((s for s in self._saved if s.key == key), None)
        return entry.token if entry is not None else None

    def client(self, device: DeviceRecord) -> AgentClient:
        """The link to ``device`` (reused while its address, pin and token stay the same)."""
        from fieldtui.client import AgentClient

        key = device_key(device)
        token = self.token(device)
        pin = device.tls_fingerprint if device.tls else None
        ident = (device.api_url, pin, token)
        cached = self._clients.get(key)
        if cached is not None and cached[0] == ident:
            return cached[1]
        if cached is not None:
            self._retired.append(cached[1])  # closed in close(): a screen may still be using it
        client = AgentClient(device.api_url, token, pin, timeout=self.timeout)
        self._clients[key] = (ident, client)
        return client

    async def probe(self, device: DeviceRecord) -> Probe:
        """Health (public), then status when a token is saved. Raises AgentClientError."""
        key = device_key(device)
        # A new link loads httpx and a CA bundle: seconds for a large fleet on a busy laptop, so not
        # on the event loop the UI runs on. Cached links are handed out at once.
        client = self.client(device) if key in self._clients else await asyncio.to_thread(self.client, device)
        health = await client.health()
        if not self.token(device):
            return Probe(health=health, status=None)
        status, cameras = await asyncio.gather(client.status(), _cameras(client))
        return Probe(health=health, status=status, cameras=cameras)

    # --- adding by hand ---------------------------------------------------------------------------

    async def add(
        self,
        host: str,
        port: int | None,
        token: str,
        fingerprint: str | None = None,
        name: str | None = None,
    ) -> Added:
        """Check the token against the device and save it (config file 0600).

        Only a checked device is saved: a host that is not an address, a device that does not answer
        within ``ADD_CHECK_S``, a refused token or a changed certificate is an error saying why, and
        nothing is saved (``fieldtui add`` saves an unreachable device on purpose, with a warning).
        """
        from fieldtui.client import normalize_fingerprint

        host, token = host.strip(), token.strip()
        if not host:
            raise ConsoleError("host is empty: type the device's address, e.g. 192.168.1.40")
        check_host(host)
        port = port or DEFAULT_PORT
        if not 0 < port < 65536:
            raise ConsoleError(f"port {port} is out of range: use 1 to 65535 (the agent's default is 8470)")
        if not token:
            raise ConsoleError("token is empty: paste what `fieldtui-agent token` prints on the device")
        pin = None
        if fingerprint and fingerprint.strip():
            try:
                pin = normalize_fingerprint(fingerprint)
            except ValueError as err:
                raise ConsoleError(f"TLS fingerprint: {err}") from None
        record = DeviceRecord(
            name=name or host,
            host=host,
            port=port,
            addresses=[host],
            tls=pin is not None,
            tls_fingerprint=pin,
            origin=["manual"],
        )
        warning = None
        try:
            # one deadline for it all: a name lookup that hangs is not covered by the HTTP timeouts
            info = await asyncio.wait_for(self._identify(record, token), ADD_CHECK_S)
            record = record.model_copy(
                update={
                    "id": info.id,
                    "name": name or info.name,
                    "version": info.version,
                    "last_seen": time.time(),
                }
            )
        except AgentUnauthorized as err:
            raise ConsoleError(
                f"{record.api_url} refused this token ({err.detail}); nothing was saved"
            ) from None
        except AgentUnreachable as err:
            raise ConsoleError(f"{err}; nothing was saved") from None
        except asyncio.TimeoutError:
            raise ConsoleError(
                f"no answer from {record.api_url} within {ADD_CHECK_S:.0f} s; nothing was saved "
                "(check the address, or pair over SSH)"
            ) from None
        except AgentClientError as err:  # a changed pin, not an agent...: saving would only hide it
            raise ConsoleError(f"{err}; nothing was saved") from None
        saved = self.config.save_device(record, token)
        self._saved = self.config.load()
        return Added(device=saved.device, warning=warning)

    async def _identify(self, record: DeviceRecord, token: str):
        from fieldtui.client import AgentClient

        async with AgentClient.for_device(record, token, timeout=min(self.timeout, 3.0)) as client:
            return await client.device()

    # --- pairing over SSH ---------------------------------------------------------------------------

    async def pair(
        self, host: str, user: str | None = None, port: int | None = None, *, accept_new: bool = False
    ) -> Added:
        """Read the token and TLS pin over SSH (fieldtui.pair) and save the device. HostKeyUnknown
        carries the fingerprint to confirm (then call again with ``accept_new``); HostKeyChanged is final."""
        from fieldtui.pair import pair_over_ssh
        from fieldtui.protocol import SSHEndpoint

        host = host.strip()
        if not host:
            raise ConsoleError("host is empty: type the device's SSH host or a ~/.ssh/config alias")
        endpoint = SSHEndpoint(host=host, port=port, user=(user or "").strip() or None)
        record, token = await pair_over_ssh(endpoint, accept_new=accept_new)
        saved = self.config.save_device(record, token)
        self._saved = self.config.load()
        return Added(device=saved.device)


async def _cameras(client: AgentClient) -> CameraList | None:
    """The camera list for the device list's ``3 cameras, 1 unhealthy``; None from an older agent."""
    try:
        return await client.cameras()
    except AgentClientError:
        return None
