"""The :class:`~fieldtui.link.base.DeviceLink` over SSH: the agent's own CLI on the device,
``fieldtui-agent ... --json``, whose output is the same :mod:`fieldtui.protocol` models the HTTP API
returns. ``restart`` restarts the systemd service rather than the pipeline: what a wedged agent needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from fieldtui.errors import ConsoleError
from fieldtui.link.base import BenchProgressFn, DeviceLink
from fieldtui.protocol import (
    Ack,
    AgentPaths,
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
    LinkKind,
    LogPage,
    ModelList,
    ModelVersion,
    PushResult,
    SSHEndpoint,
)
from fieldtui.protocol.visit import VisitFacts
from fieldtui.push import ProgressFn, PushProgress, plan_push
from fieldtui.ssh import SUDO, RemoteCommandFailed, SSHError, SSHSession, remote_failure, sudo_wants_password

SERVICE = "fieldtui-agent"
DISCARD_TIMEOUT_S = 5.0


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

    async def visit_facts(self, since: float | None = None, snapshot_width: int = 480) -> VisitFacts:
        """``fieldtui-agent report --json``: jobs, benchmarks, forwarding, series and a snapshot."""
        args = ["report", "--snapshot-width", str(snapshot_width)]
        if since is not None:
            args += ["--since", repr(float(since))]
        return await self._json(VisitFacts, *args)

    async def restart(self) -> Ack:
        ssh = await self.session()
        await ssh.check_shell()
        root = (await ssh.run(["id", "-u"])).stdout.strip() == "0"
        argv = ["systemctl", "restart", SERVICE] if root else [*SUDO, "systemctl", "restart", SERVICE]
        result = await ssh.run(argv, check=False)
        if result.exit_status != 0:
            err = result.stderr or ""
            if sudo_wants_password(err):
                raise SSHError(
                    f"sudo on {self.endpoint.host} needs a password: allow `systemctl restart {SERVICE}` "
                    f"for {ssh.user} in sudoers, or restart by hand"
                )
            raise remote_failure(
                argv, result.exit_status, err, self.endpoint.host, f"systemctl restart {SERVICE}"
            )
        return Ack(message=f"{SERVICE} restarted on {self.endpoint.host} (systemd)")

    async def push(
        self,
        path: Path,
        version: str,
        *,
        activate: bool = False,
        on_progress: ProgressFn | None = None,
        force: bool = False,
    ) -> PushResult:
        """Hash here, copy into the agent's staging area (SFTP, or ``cat`` where the device has no SFTP
        server: :mod:`fieldtui.ssh_upload`), check the sha256 there, ``models add`` (which
        verifies and loads it as an HTTP upload would), then ``models activate``. The uploaded file is
        removed afterwards, over a new connection if the link dropped (and else by the agent's next start).
        With ``sudo`` the file goes to a private folder in the SSH user's home instead (removed with it)
        and ``sudo -n fieldtui-agent models add`` reads it from there."""
        size, fmt, sha256, existing = await plan_push(path, version, self.models, on_progress)
        uploaded = existing is None
        stored = (
            existing
            if existing is not None
            else await self._upload_and_add(path, version, fmt, size, sha256, on_progress, force)
        )
        job = None
        if activate:
            if on_progress:
                on_progress(PushProgress("activating", 0, 100, "over SSH"))
            job = await self._job("models", "activate", version, *(["--force"] if force else []))
        return PushResult(version=stored, uploaded=uploaded, activation=job)

    async def _upload_and_add(
        self,
        path: Path,
        version: str,
        fmt: str,
        size: int,
        sha256: str,
        on_progress: ProgressFn | None,
        force: bool = False,
    ) -> ModelVersion:
        ssh = await self.session()
        if ssh.endpoint.sudo:  # the SSH user cannot write the agent's staging area: its own 0700 folder
            folder = await _private_folder(ssh)
        else:
            folder = _parse_paths(await ssh.agent_json("home"))
        remote = f"{folder}/ssh-{uuid.uuid4().hex[:12]}.{fmt}"

        def progress(done: int, total: int) -> None:
            if on_progress:
                on_progress(PushProgress("uploading", done, total or size))

        progress(0, size)
        try:
            how = await ssh.upload(path, remote, progress)
            if on_progress:
                on_progress(PushProgress("verifying", size, size, how))
            got = await ssh.sha256(remote)
            if got != sha256:
                raise ConsoleError(
                    f"sha256 mismatch after the upload ({how}): expected {sha256[:12]}…, the device has "
                    f"{got[:12] or '?'}…; the upload was discarded, push again"
                )
            add = ssh.agent_argv(
                "models",
                "add",
                remote,
                "--version",
                version,
                "--sha256",
                sha256,
                "--json",
                *(["--force"] if force else []),
            )
            return _parse(ModelVersion, ssh.json_out(await ssh.run(add)), ("models", "add"))
        finally:
            await self._discard(folder if ssh.endpoint.sudo else remote, folder=ssh.endpoint.sudo)

    async def _discard(self, remote: str, *, folder: bool) -> None:
        """Remove the uploaded file (or private folder) whatever happened; over a new connection when the
        old one dropped mid-upload. Best effort: a dropped link must not hide why the push failed, and the
        agent's next start empties its staging area anyway."""
        for attempt in range(2):
            try:
                ssh = await asyncio.wait_for(self.session(), DISCARD_TIMEOUT_S)
                await asyncio.wait_for(ssh.remove(remote, folder=folder), DISCARD_TIMEOUT_S)
                return
            except (ConsoleError, OSError, asyncio.TimeoutError):
                if attempt == 0 and self._session is not None:
                    with contextlib.suppress(Exception):
                        self._session.conn.abort()
                self._session = None

    async def _job(self, *args: str) -> Job:
        """A ``models activate|rollback`` job; a failed one is the result (its Job JSON), not an exception."""
        ssh = await self.session()
        await ssh.check_shell()
        argv = ssh.agent_argv(*args, "--json")
        result = await ssh.run(argv, check=False)
        try:
            return Job.model_validate_json(ssh.json_out(result))
        except ValidationError:
            if result.exit_status == 0:
                raise
            raise remote_failure(
                argv, result.exit_status, result.stderr or "", self.endpoint.host, None
            ) from None

    async def activate(self, version: str, *, force: bool = False) -> Job:
        return await self._job("models", "activate", version, *(["--force"] if force else []))

    async def rollback(self) -> Job:
        return await self._job("models", "rollback")

    async def models(self) -> ModelList:
        return await self._json(ModelList, "models", "list")

    async def remove(self, version: str) -> ModelList:
        return await self._json(ModelList, "models", "remove", version)

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

    async def cameras(self) -> CameraList:
        return await self._json(CameraList, "cameras")

    async def change_camera(self, name: str, change: CameraChange, *, add: bool) -> CameraStatus:
        """``fieldtui-agent camera add|set NAME ... --json``; the source URI goes on stdin (``-``), never
        on the device's command line, where any user could read its password with ``ps``."""
        args = ["camera", "add" if add else "set", name]
        if add:
            args.append("-")
        elif change.source is not None:
            args += ["--source", "-"]
        if "conf" in change.model_fields_set:
            args += ["--conf", "default" if change.conf is None else repr(change.conf)]
        if add and change.enabled is False:
            args.append("--disabled")
        elif not add and change.enabled is not None:
            args.append("--enable" if change.enabled else "--disable")
        ssh = await self.session()
        await ssh.check_shell()
        stdin = f"{change.source}\n" if change.source is not None else None
        result = await ssh.run(ssh.agent_argv(*args, "--json"), input=stdin)
        return _parse(CameraStatus, ssh.json_out(result), tuple(args))

    async def remove_camera(self, name: str) -> CameraList:
        ssh = await self.session()
        await ssh.check_shell()
        return _parse(CameraList, await ssh.agent_json("camera", "remove", name), ("camera", "remove"))

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
    if request.mode == "cameras":  # the agent's CLI runs it too (agent/bench/cameras.py)
        flags = ["--cameras", str(request.cameras), "--camera-fps", f"{request.camera_fps:g}"]
        flags += ["--duration", f"{request.duration_s:g}", "--backend", request.backends[0]]
        return flags + (["--threads", str(request.threads[0])] if request.threads[0] is not None else [])
    if request.mode != "model":
        raise ConsoleError(
            f"a {request.mode}-mode benchmark needs the agent's API; over SSH ({host}) only model and cameras "
            "mode run"
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
    if request.version_compatible:
        flags.append("--version-compatible")
    return [*flags, "--activate"] if request.activate else flags


PUSH_FOLDER = 'mkdir -p -m 700 "$HOME/.cache" && mktemp -d "$HOME/.cache/fieldtui-push.XXXXXX"'


async def _private_folder(ssh: SSHSession) -> str:
    """A fresh 0700 folder (mktemp -d) under the SSH user's ``~/.cache``: its absolute path."""
    folder = (await ssh.run(["sh", "-c", PUSH_FOLDER], what="mktemp -d ~/.cache/fieldtui-push.XXXXXX")).stdout
    folder = (folder or "").strip()
    if not folder.startswith("/") or "/fieldtui-push." not in folder:  # never rm -rf something else
        raise SSHError(f"mktemp on {ssh.endpoint.host} printed {folder!r}, not a folder path")
    return folder


def _parse_paths(text: str) -> str:
    return _parse(AgentPaths, text, ("home",)).staging
