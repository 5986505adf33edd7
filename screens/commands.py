"""Command palette provider: "Open <device>" for every device the console knows.

Actions (add, refresh, restart, logs, help, quit...) come from ``FieldtuiApp.get_system_commands``,
which adds the current screen's ``commands()``; this provider adds the devices themselves, so
``ctrl+p`` (or ``:``) then a few letters of a name jumps straight to its dashboard from anywhere.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from fieldtui.errors import ConsoleError
from fieldtui.protocol import DeviceRecord


class DeviceCommands(Provider):
    def _devices(self) -> list[DeviceRecord]:
        try:
            return list(self.app.fleet.devices())  # type: ignore[attr-defined]
        except ConsoleError:
            return []  # a damaged config is reported on the device list, not in the palette

    @staticmethod
    def _title(record: DeviceRecord) -> str:
        lost = " (lost)" if record.lost else ""
        return f"Open {record.name} ({record.host}:{record.port}){lost}"

    async def discover(self) -> Hits:
        for record in self._devices():
            yield DiscoveryHit(
                self._title(record),
                partial(self.app.open_device, record),  # type: ignore[attr-defined]
                help="the device's live dashboard",
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for record in self._devices():
            title = self._title(record)
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(title),
                    partial(self.app.open_device, record),  # type: ignore[attr-defined]
                    help="the device's live dashboard",
                )
