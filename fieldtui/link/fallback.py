"""One interface for both links to a device: the HTTP API, or SSH running the agent's own CLI.

Every console operation (status, logs, restart, push, rollback, models, doctor, bench) returns the same
:mod:`fieldtui.protocol` models whichever link ran it: over SSH the device prints them with
``fieldtui-agent ... --json``. :func:`open_link` gives the link a command should use:

- ``ssh=True`` (``--ssh``): SSH only;
- a device never paired over SSH (no ``ssh`` in its record): HTTP only, as nothing says SSH reaches it;
- otherwise HTTP first; when it fails in a way SSH can get around (refused, timed out, the TLS pin does
  not match, no token saved yet) the link says why through ``notice`` and runs that operation, and the
  rest, over SSH. Errors the agent itself answered (a refused model, a bad version name) are not retried:
  SSH would reach the same agent and get the same answer.

``restart`` differs by link on purpose: an agent that answers HTTP restarts its pipeline in place; over
SSH the service itself is restarted (``systemctl restart fieldtui-agent``), which is what a wedged or
crashed agent needs.

The links themselves are in fieldtui/link/http.py and fieldtui/link/ssh.py, their interface in
fieldtui/link/base.py; every name is also importable from here.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from fieldtui.config import SavedDevice
from fieldtui.errors import AgentUnreachable, TLSPinMismatch, UnknownDevice
from fieldtui.link.base import BenchProgressFn, DeviceLink, NoticeFn
from fieldtui.link.http import HttpLink
from fieldtui.link.ssh import SSHLink, bench_flags, rebuild_flags
from fieldtui.protocol import (
    Ack,
    BackendInfo,
    BenchmarkRequest,
    BenchmarkRun,
    CameraChange,
    CameraList,
    CameraStatus,
    DeviceStatus,
    EngineList,
    EngineRebuildRequest,
    EngineRebuildResult,
    Job,
    LogPage,
    ModelList,
    PushResult,
    SSHEndpoint,
)
from fieldtui.push import ProgressFn
from fieldtui.ssh import HostKeyChanged, HostKeyUnknown, RemoteCommandFailed, SSHError

__all__ = [
    "BenchProgressFn",
    "DeviceLink",
    "FallbackLink",
    "HttpLink",
    "NoticeFn",
    "SSHLink",
    "bench_flags",
    "open_link",
    "rebuild_flags",
    "ssh_endpoint",
    "stderr_notice",
]

T = TypeVar("T")
# HTTP failures SSH can get around; anything else the agent answered would be answered the same again.
FALLBACK_ERRORS = (AgentUnreachable, TLSPinMismatch, UnknownDevice)


def stderr_notice(line: str) -> None:
    print(f"fieldtui: {line}", file=sys.stderr, flush=True)


def ssh_endpoint(entry: SavedDevice) -> SSHEndpoint:
    """Where SSH goes for a device: what pairing saved, else its address with ~/.ssh/config's defaults."""
    return entry.device.ssh or SSHEndpoint(host=entry.device.host)


class FallbackLink(DeviceLink):
    """HTTP first; on a failure SSH can get around, say why and continue over SSH."""

    def __init__(self, http: HttpLink | None, ssh: SSHLink, notice: NoticeFn, why_not_http: str = "") -> None:
        self.http = http
        self.ssh = ssh
        self.notice = notice
        self.why_not_http = why_not_http
        self.kind = http.kind if http is not None else "ssh"

    async def _either(self, call: Callable[[DeviceLink], Awaitable[T]]) -> T:
        if self.http is not None:
            try:
                return await call(self.http)
            except FALLBACK_ERRORS as err:
                self.notice(f"{err}; falling back to SSH ({self.ssh.endpoint.host})")
                await self.http.aclose()
                self.http = None
                self.why_not_http = str(err)
                self.kind = "ssh"
        try:
            return await call(self.ssh)
        except (HostKeyUnknown, HostKeyChanged):
            raise  # their own words are the point; the TUI asks about an unknown key by its type
        except SSHError as err:
            if not self.why_not_http or isinstance(err, RemoteCommandFailed):
                raise
            raise SSHError(f"{self.why_not_http}; and over SSH: {err}") from None

    async def status(self) -> DeviceStatus:
        return await self._either(lambda link: link.status())

    async def logs(self, lines: int = 100) -> LogPage:
        return await self._either(lambda link: link.logs(lines))

    async def restart(self) -> Ack:
        return await self._either(lambda link: link.restart())

    async def push(
        self,
        path: Path,
        version: str,
        *,
        activate: bool = False,
        on_progress: ProgressFn | None = None,
        force: bool = False,
    ) -> PushResult:
        return await self._either(
            lambda link: link.push(path, version, activate=activate, on_progress=on_progress, force=force)
        )

    async def activate(self, version: str, *, force: bool = False) -> Job:
        return await self._either(lambda link: link.activate(version, force=force))

    async def rollback(self) -> Job:
        return await self._either(lambda link: link.rollback())

    async def models(self) -> ModelList:
        return await self._either(lambda link: link.models())

    async def remove(self, version: str) -> ModelList:
        return await self._either(lambda link: link.remove(version))

    async def doctor(self) -> list[BackendInfo]:
        return await self._either(lambda link: link.doctor())

    async def bench(
        self, request: BenchmarkRequest, *, on_progress: BenchProgressFn | None = None
    ) -> BenchmarkRun:
        return await self._either(lambda link: link.bench(request, on_progress=on_progress))

    async def engines(self) -> EngineList:
        return await self._either(lambda link: link.engines())

    async def cameras(self) -> CameraList:
        return await self._either(lambda link: link.cameras())

    async def change_camera(self, name: str, change: CameraChange, *, add: bool) -> CameraStatus:
        return await self._either(lambda link: link.change_camera(name, change, add=add))

    async def remove_camera(self, name: str) -> CameraList:
        return await self._either(lambda link: link.remove_camera(name))

    async def rebuild(
        self, request: EngineRebuildRequest, *, on_progress: BenchProgressFn | None = None
    ) -> EngineRebuildResult:
        return await self._either(lambda link: link.rebuild(request, on_progress=on_progress))

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        await self.ssh.aclose()


def open_link(
    entry: SavedDevice,
    *,
    ssh: bool = False,
    accept_new: bool = False,
    notice: NoticeFn = stderr_notice,
    timeout: float = 10.0,
    job_timeout: float = 120.0,
) -> DeviceLink:
    """The link for ``entry``: SSH only when ``ssh``, else HTTP falling back to SSH (see the module doc)."""
    ssh_link = SSHLink(ssh_endpoint(entry), accept_new=accept_new)
    if ssh:
        return ssh_link
    if entry.device.ssh is None:  # never paired over SSH: nothing says SSH reaches it, so HTTP alone
        return HttpLink(entry, timeout=timeout, job_timeout=job_timeout)
    if not entry.token:
        why = (
            f"no token is saved for {entry.device.api_url}: pair it with `fieldtui pair {entry.device.host}` "
            f"or `fieldtui add {entry.device.host} --token T`"
        )
        notice(f"{why}; using SSH ({ssh_link.endpoint.host})")
        return FallbackLink(None, ssh_link, notice, why)
    return FallbackLink(HttpLink(entry, timeout=timeout, job_timeout=job_timeout), ssh_link, notice)
