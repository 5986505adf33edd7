"""A live status over SSH: ``fieldtui-agent status --json`` through one SSH connection, every few seconds.

When a device's HTTP API is out of reach there is no event stream, so a live view reads the status the
agent's own CLI prints (the same :class:`~fieldtui.protocol.DeviceStatus` the API gives) on a period.
The connection is kept between reads and opened again after a failure; an unknown or changed host key
ends the watch, since only a person can decide about it. No Textual import: the dashboard passes
callbacks that only post messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fieldtui.errors import ConsoleError
from fieldtui.protocol import DeviceStatus, LogPage, SSHEndpoint

StatusFn = Callable[[DeviceStatus, "LogPage | None"], None]
ErrorFn = Callable[[str, bool], None]  # (what went wrong, whether the watch goes on)


async def poll_status(
    endpoint: SSHEndpoint,
    every: float,
    on_status: StatusFn,
    on_error: ErrorFn,
    *,
    log_lines: int = 5,
) -> None:
    """Read the status every ``every`` seconds until cancelled; the first read brings the log tail too."""
    from fieldtui.link.fallback import SSHLink
    from fieldtui.ssh import HostKeyChanged, HostKeyUnknown

    link = SSHLink(endpoint)
    first = True
    try:
        while True:
            try:
                status = await link.status()
                logs = await link.logs(log_lines) if first else None
                first = False
                on_status(status, logs)
            except (HostKeyUnknown, HostKeyChanged) as err:
                on_error(str(err), False)
                return
            except ConsoleError as err:
                on_error(str(err), True)
                await link.aclose()  # a fresh connection on the next read
            await asyncio.sleep(every)
    finally:
        await link.aclose()
