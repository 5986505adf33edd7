"""mDNS / DNS-SD advertisement: ``<device name>._fieldtui._tcp.local.`` so the console finds the agent.

TXT record (every entry well under 255 bytes)::

    id=<device id>  ver=<agent version>  api=v1  model=<active model>  backend=<backend key>
    tls=0 | <sha256 fingerprint of the certificate>  health=ok | degraded | failing (agent/server/verdict.py)

The A records name a host of our own (``fieldtui-<id>.local.``) rather than the machine's hostname,
so the agent never contends with Avahi or systemd-resolved, which already answer for ``<hostname>.local``.
A failure to advertise (no multicast in a container, say) is logged and the agent serves on: the console
can still add the device by address.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence

from agent.server.device import is_ipv4, lan_addresses
from fieldtui.protocol import SERVICE_TYPE

log = logging.getLogger("fieldtui.agent.mdns")

_TXT_MAX = 255


def instance_name(name: str) -> str:
    """A DNS-SD instance label: no dots (they would split it), at most 63 bytes of UTF-8."""
    label = name.replace(".", "-").strip() or "fieldtui-agent"
    while len(label.encode()) > 63:
        label = label[:-1]
    return label


def txt_record(fields: Mapping[str, str | None]) -> dict[str, str]:
    """TXT entries, each ``key=value`` cut to fit the 255-byte limit of one entry."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        value = "" if value is None else str(value)
        room = _TXT_MAX - len(key.encode()) - 1
        while len(value.encode()) > room:
            value = value[:-1]
        out[key] = value
    return out


def advertised_addresses(host: str, interfaces: Sequence[str] | None) -> list[str]:
    """Where the console should connect: the bound address, or for a wildcard bind the addresses of
    the interfaces mDNS runs on (every non-loopback IPv4 address when that is all of them)."""
    if host not in ("0.0.0.0", "", "::"):
        if is_ipv4(host):
            return [host]
        try:
            return [socket.gethostbyname(host)]
        except OSError:
            return []
    if interfaces:
        return [ip for ip in interfaces if is_ipv4(ip)]
    return lan_addresses()


class Advertiser:
    """Registers, updates and withdraws the agent's service. Use from the event loop."""

    def __init__(
        self,
        *,
        name: str,
        device_id: str,
        port: int,
        host: str,
        txt: Mapping[str, str | None],
        interfaces: Sequence[str] | None = None,
    ) -> None:
        self.name = instance_name(name)
        self.port = port
        self.interfaces = list(interfaces) if interfaces else None
        self.addresses = advertised_addresses(host, self.interfaces)
        self.server = f"fieldtui-{device_id[:12]}.local."
        self.txt = txt_record(txt)
        self._zc = None
        self._info = None

    def _service_info(self):  # -> zeroconf.ServiceInfo
        from zeroconf import ServiceInfo

        return ServiceInfo(
            SERVICE_TYPE,
            f"{self._info.name if self._info else self.name + '.' + SERVICE_TYPE}",
            port=self.port,
            properties=self.txt,
            server=self.server,
            parsed_addresses=self.addresses,
        )

    @property
    def service_name(self) -> str | None:
        """The registered name (zeroconf appends `` (2)`` and so on when the name was taken)."""
        return self._info.name if self._info is not None else None

    async def start(self) -> bool:
        """Register; False (with a warning in the log) when mDNS is not possible here."""
        from zeroconf import InterfaceChoice
        from zeroconf.asyncio import AsyncZeroconf

        if not self.addresses:
            log.warning(
                "mDNS not advertised: no IPv4 address to announce (bound to a wildcard with no "
                "network up?); the console can still add this device by address"
            )
            return False
        try:
            self._zc = AsyncZeroconf(interfaces=self.interfaces or InterfaceChoice.All)
            info = self._service_info()
            await (await self._zc.async_register_service(info, allow_name_change=True))
            self._info = info
        except Exception as err:  # noqa: BLE001 - any socket or zeroconf failure: serve on without mDNS
            log.warning(
                "mDNS advertisement failed (%s: %s); the console can still add this device by address",
                type(err).__name__,
                err,
            )
            await self._close_zc()
            return False
        log.info("advertising %r as %s on %s", self._info.name, SERVICE_TYPE, ", ".join(self.addresses))
        return True

    async def update(self, txt: Mapping[str, str | None]) -> None:
        """Announce new TXT fields (the active model changed); a no-op when not registered."""
        self.txt = txt_record({**self.txt, **txt})
        if self._zc is None or self._info is None:
            return
        info = self._service_info()
        try:
            await (await self._zc.async_update_service(info))
            self._info = info
        except Exception as err:  # noqa: BLE001 - a failed re-announce must not break an activation
            log.warning("mDNS update failed (%s: %s)", type(err).__name__, err)

    async def stop(self) -> None:
        """Send goodbyes so consoles drop the device now, not when the record's TTL runs out."""
        if self._zc is not None and self._info is not None:
            try:
                await (await self._zc.async_unregister_service(self._info))
            except Exception as err:  # noqa: BLE001 - shutting down: log and go on
                log.warning("mDNS unregister failed (%s: %s)", type(err).__name__, err)
        self._info = None
        await self._close_zc()

    async def _close_zc(self) -> None:
        if self._zc is not None:
            zc, self._zc = self._zc, None
            try:
                await zc.async_close()
            except Exception as err:  # noqa: BLE001
                log.debug("zeroconf close: %s", err)
