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
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from fieldtui.client import AgentClient
from fieldtui.config import SavedDevice
from fieldtui.errors import AgentUnreachable, ConsoleError, TLSPinMismatch, UnknownDevice
from fieldtui.protocol import (
    Ack,
    AgentPaths,
    BackendInfo,
    BenchmarkRequest,
    BenchmarkRun,
    DeviceStatus,
    EngineList,
    EngineRebuildRequest,
    EngineRebuildResult,
    Job,
    LinkKind,
    LogPage,
    ModelList,
    ModelVersion,
    PushResult,
    SSHEndpoint,
)
from fieldtui.push import ProgressFn, PushProgress, follow_job, plan_push, push_model
from fieldtui.ssh import (
    HostKeyChanged,
    HostKeyUnknown,
    RemoteCommandFailed,
    SSHError,
    SSHSession,
    remote_failure,
)

NoticeFn = Callable[[str], None]
BenchProgressFn = Callable[[float, str], None]  # (fraction done, stage)
T = TypeVar("T")
# HTTP failures SSH can get around; anything else the agent answered would be answered the same again.
FALLBACK_ERRORS = (AgentUnreachable, TLSPinMismatch, UnknownDevice)
SERVICE = "fieldtui-agent"
BENCH_POLL_S = 0.3


def stderr_notice(line: str) -> None:
    print(f"fieldtui: {line}", file=sys.stderr, flush=True)


def ssh_endpoint(entry: SavedDevice) -> SSHEndpoint:
    """Where SSH goes for a device: what pairing saved, else its address with ~/.ssh/config's defaults."""
    return entry.device.ssh or SSHEndpoint(host=entry.device.host)


class DeviceLink:
    """The console operations on one device. ``async with`` closes the connection."""

    kind: LinkKind

    async def status(self) -> DeviceStatus:
        raise NotImplementedError

    async def logs(self, lines: int = 100) -> LogPage:
        raise NotImplementedError

    async def restart(self) -> Ack:
        raise NotImplementedError

    async def push(
        self, path: Path, version: str, *, activate: bool = False, on_progress: ProgressFn | None = None
    ) -> PushResult:
        raise NotImplementedError

    async def rollback(self) -> Job:
        raise NotImplementedError

    async def models(self) -> ModelList:
        raise NotImplementedError

    async def doctor(self) -> list[BackendInfo]:
        raise NotImplementedError

    async def bench(
        self, request: BenchmarkRequest, *, on_progress: BenchProgressFn | None = None
    ) -> BenchmarkRun:
        raise NotImplementedError

    async def engines(self) -> EngineList:
        raise NotImplementedError

    async def rebuild(
        self, request: EngineRebuildRequest, *, on_progress: BenchProgressFn | None = None
    ) -> EngineRebuildResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> DeviceLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class HttpLink(DeviceLink):
    def __init__(self, entry: SavedDevice, timeout: float = 10.0, job_timeout: float = 120.0) -> None:
        self.kind = "https" if entry.device.tls else "http"
        self.entry = entry
        self.job_timeout = job_timeout
        self.client = AgentClient.for_device(entry.device, entry.token, timeout=timeout)

    def _need_token(self) -> None:
        if not self.entry.token:
            host = self.entry.device.host
            raise UnknownDevice(
                f"{self.entry.device.api_url} answers, but no token is saved for it: pair it with "
                f"`fieldtui pair {host}` (over SSH) or `fieldtui add {host} --token T`"
            )

    async def status(self) -> DeviceStatus:
        health = await self.client.health()  # public: "down" is told apart from "not paired" first
        self._need_token()
        device, status = await asyncio.gather(self.client.device(), self.client.status())
        return DeviceStatus(device=device, health=health, status=status)

    async def logs(self, lines: int = 100) -> LogPage:
        self._need_token()
        return await self.client.logs(limit=lines)

    async def restart(self) -> Ack:
        self._need_token()
        job = await self.client.wait_job((await self.client.pipeline_restart()).id, timeout=self.job_timeout)
        if job.state != "succeeded":
            raise ConsoleError(f"pipeline restart {job.state}: {job.error or 'see `fieldtui logs`'}")
        return Ack(message="the agent restarted its pipeline")

    async def push(
        self, path: Path, version: str, *, activate: bool = False, on_progress: ProgressFn | None = None
    ) -> PushResult:
        self._need_token()
        return await push_model(
            self.client,
            path,
            version,
            activate=activate,
            on_progress=on_progress,
            job_timeout=self.job_timeout,
        )

    async def rollback(self) -> Job:
        self._need_token()
        return await follow_job(self.client, await self.client.rollback_model(), timeout=self.job_timeout)

    async def models(self) -> ModelList:
        self._need_token()
        return await self.client.models()

    async def doctor(self) -> list[BackendInfo]:
        self._need_token()
        return (await self.client.device()).backends

    async def bench(
        self, request: BenchmarkRequest, *, on_progress: BenchProgressFn | None = None
    ) -> BenchmarkRun:
        """Submit a ``POST /v1/benchmarks`` job and follow it; the job is cancelled if this is."""
        self._need_token()
        job = await self._follow(await self.client.start_benchmark(request), on_progress)
        if job.state != "succeeded" or job.result is None:
            raise ConsoleError(f"benchmark {job.state}: {job.error or 'no result'}")
        return BenchmarkRun.model_validate(job.result)

    async def engines(self) -> EngineList:
        self._need_token()
        return await self.client.engines()

    async def rebuild(
        self, request: EngineRebuildRequest, *, on_progress: BenchProgressFn | None = None
    ) -> EngineRebuildResult:
        """Submit ``POST /v1/engines/rebuild`` and follow it (and the activation it starts); the job is
        cancelled if this is."""
        self._need_token()
        job = await self._follow(await self.client.rebuild_engine(request), on_progress)
        if job.state != "succeeded" or job.result is None:
            raise ConsoleError(f"engine rebuild {job.state}: {job.error or 'no result'}")
        result = EngineRebuildResult.model_validate(job.result)
        if result.activation_job:
            activation = await self._follow(await self.client.job(result.activation_job), on_progress)
            if activation.state != "succeeded":
                raise ConsoleError(
                    f"{result.model_version} was built and stored but not activated: {activation.error}"
                )
        return result

    async def _follow(self, job: Job, on_progress: BenchProgressFn | None) -> Job:
        """Poll ``job`` until it ends, reporting progress; cancel it if this is cancelled."""
        try:
            while job.state not in ("succeeded", "failed", "cancelled"):
                if on_progress:
                    on_progress(job.progress, job.stage or job.state)
                await asyncio.sleep(BENCH_POLL_S)
                job = await self.client.job(job.id)
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self.client.cancel_job(job.id)
            raise
        return job

    async def aclose(self) -> None:
        await self.client.aclose()


class SSHLink(DeviceLink):
    """The operations through ``fieldtui-agent ... --json`` over one SSH connection (opened on first use)."""

    kind: LinkKind = "ssh"

    def __init__(self, endpoint: SSHEndpoint, *, accept_new: bool = False) -> None:
        self.endpoint = endpoint
        self.accept_new = accept_new
        self._session: SSHSession | None = None

    async def session(self) -> SSHSession:
        if self._session is None:
            self._session = await SSHSession.connect(self.endpoint, accept_new=self.accept_new)
        return self._session

    async def _json(self, model: Any, *args: str, home: bool = True) -> Any:
        ssh = await self.session()
        out = await ssh.agent_json(*args, home=home)
        return _parse(model, out, args)

    async def status(self) -> DeviceStatus:
        return await self._json(DeviceStatus, "status")

    async def logs(self, lines: int = 100) -> LogPage:
        return await self._json(LogPage, "logs", "--lines", str(lines))

    async def restart(self) -> Ack:
        ssh = await self.session()
        root = (await ssh.run(["id", "-u"])).stdout.strip() == "0"
        argv = ["systemctl", "restart", SERVICE] if root else ["sudo", "-n", "systemctl", "restart", SERVICE]
        result = await ssh.run(argv, check=False)
        if result.exit_status != 0:
            err = result.stderr or ""
            if "password is required" in err or "terminal is required" in err:
                raise SSHError(
                    f"sudo on {self.endpoint.host} needs a password: allow `systemctl restart {SERVICE}` "
                    f"for {ssh.user} in sudoers, or restart by hand"
                )
            raise remote_failure(
                argv, result.exit_status, err, self.endpoint.host, f"systemctl restart {SERVICE}"
            )
        return Ack(message=f"{SERVICE} restarted on {self.endpoint.host} (systemd)")

    async def push(
        self, path: Path, version: str, *, activate: bool = False, on_progress: ProgressFn | None = None
    ) -> PushResult:
        """Hash here, SFTP into the agent's staging area, check the sha256 there, ``models add`` (which
        verifies and loads it as an HTTP upload would), then ``models activate``. The uploaded file is
        removed afterwards; if the link dies first, the agent empties its staging area at its next start."""
        size, fmt, sha256, existing = await plan_push(path, version, self.models, on_progress)
        uploaded = existing is None
        stored = (
            existing
            if existing is not None
            else await self._upload_and_add(path, version, fmt, size, sha256, on_progress)
        )
        job = None
        if activate:
            if on_progress:
                on_progress(PushProgress("activating", 0, 100, "over SSH"))
            job = await self._job("models", "activate", version)
        return PushResult(version=stored, uploaded=uploaded, activation=job)

    async def _upload_and_add(
        self, path: Path, version: str, fmt: str, size: int, sha256: str, on_progress: ProgressFn | None
    ) -> ModelVersion:
        ssh = await self.session()
        paths = await ssh.agent_json("home")
        staging = _parse_paths(paths)
        remote = f"{staging}/ssh-{uuid.uuid4().hex[:12]}.{fmt}"

        def progress(done: int, total: int) -> None:
            if on_progress:
                on_progress(PushProgress("uploading", done, total or size))

        progress(0, size)
        try:
            await ssh.upload(path, remote, progress)
            if on_progress:
                on_progress(PushProgress("verifying", size, size))
            got = await ssh.sha256(remote)
            if got != sha256:
                raise ConsoleError(
                    f"sha256 mismatch after the SFTP upload: expected {sha256[:12]}…, the device has {got[:12] or '?'}…; "
                    "the upload was discarded, push again"
                )
            return _parse(
                ModelVersion,
                (
                    await ssh.run(
                        ssh.agent_argv(
                            "models", "add", remote, "--version", version, "--sha256", sha256, "--json"
                        )
                    )
                ).stdout,
                ("models", "add"),
            )
        finally:
            await ssh.remove(remote)

    async def _job(self, *args: str) -> Job:
        """A ``models activate|rollback`` job; a failed one is the result (its Job JSON), not an exception."""
        ssh = await self.session()
        argv = ssh.agent_argv(*args, "--json")
        result = await ssh.run(argv, check=False)
        try:
            return Job.model_validate_json(result.stdout or "")
        except ValidationError:
            if result.exit_status == 0:
                raise
            raise remote_failure(
                argv, result.exit_status, result.stderr or "", self.endpoint.host, None
            ) from None

    async def rollback(self) -> Job:
        return await self._job("models", "rollback")

    async def models(self) -> ModelList:
        return await self._json(ModelList, "models", "list")

    async def doctor(self) -> list[BackendInfo]:
        return await self._json(TypeAdapter(list[BackendInfo]), "doctor", home=False)

    async def bench(
        self, request: BenchmarkRequest, *, on_progress: BenchProgressFn | None = None
    ) -> BenchmarkRun:
        """``fieldtui-agent bench --json`` on the device: the store's current model, measured there and
        saved to the same history as API runs. No progress comes back until it ends."""
        return await self._json(BenchmarkRun, "bench", *bench_flags(request, self.endpoint.host))

    async def engines(self) -> EngineList:
        return await self._json(EngineList, "engines", "list")

    async def rebuild(
        self, request: EngineRebuildRequest, *, on_progress: BenchProgressFn | None = None
    ) -> EngineRebuildResult:
        """``fieldtui-agent engines rebuild --json`` on the device (through its serving agent when one
        runs there, so it calibrates on the live source). No progress comes back until it ends."""
        return await self._json(EngineRebuildResult, "engines", "rebuild", *rebuild_flags(request))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _parse(model: Any, text: str, args: tuple[str, ...]) -> Any:
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_json(text)
        return model.model_validate_json(text)
    except ValidationError as err:
        raise RemoteCommandFailed(
            f"remote `fieldtui-agent {' '.join(args[:2])} --json` printed something other than its JSON "
            f"({str(err).splitlines()[0]}): is the device's fieldtui-agent too old for this console?",
            command=" ".join(args),
            exit_status=0,
            stderr="",
        ) from None


def bench_flags(request: BenchmarkRequest, host: str) -> list[str]:
    """``fieldtui-agent bench`` flags for ``request``; what the agent's CLI cannot run is refused here."""
    if request.mode != "model":
        raise ConsoleError(
            f"a pipeline-mode benchmark needs the agent's API; over SSH ({host}) only model mode runs"
        )
    if request.accuracy_frames != BenchmarkRequest().accuracy_frames:
        raise ConsoleError("accuracy_frames cannot be set over SSH: the agent's CLI uses its default")
    threads = [t for t in request.threads if t is not None]
    if threads and len(threads) != len(request.threads):
        raise ConsoleError("over SSH, --threads cannot mix the runtime default with thread counts")
    flags: list[str] = []
    for flag, values in (
        ("--backend", request.backends),
        ("--precision", request.precisions),
        ("--threads", threads),
        ("--batch", request.batch_sizes),
    ):
        for value in values:
            flags += [flag, str(value)]
    return [*flags, "--iterations", str(request.iterations), "--warmup", str(request.warmup)]


def rebuild_flags(request: EngineRebuildRequest) -> list[str]:
    """``fieldtui-agent engines rebuild`` flags for ``request``."""
    flags = ["--backend", request.backend, "--precision", request.precision]
    flags += ["--frames", str(request.calibration_frames), "--accuracy-frames", str(request.accuracy_frames)]
    for flag, value in (
        ("--version", request.version),
        ("--calibration-dir", request.calibration_dir),
        ("--workspace-mb", request.workspace_mb),
    ):
        if value is not None:
            flags += [flag, str(value)]
    return [*flags, "--activate"] if request.activate else flags


def _parse_paths(text: str) -> str:
    return _parse(AgentPaths, text, ("home",)).staging


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
        self, path: Path, version: str, *, activate: bool = False, on_progress: ProgressFn | None = None
    ) -> PushResult:
        return await self._either(
            lambda link: link.push(path, version, activate=activate, on_progress=on_progress)
        )

    async def rollback(self) -> Job:
        return await self._either(lambda link: link.rollback())

    async def models(self) -> ModelList:
        return await self._either(lambda link: link.models())

    async def doctor(self) -> list[BackendInfo]:
        return await self._either(lambda link: link.doctor())

    async def bench(
        self, request: BenchmarkRequest, *, on_progress: BenchProgressFn | None = None
    ) -> BenchmarkRun:
        return await self._either(lambda link: link.bench(request, on_progress=on_progress))

    async def engines(self) -> EngineList:
        return await self._either(lambda link: link.engines())

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
