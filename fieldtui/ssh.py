"""SSH to a device with asyncssh: the technician's own SSH setup, host keys checked, commands and SFTP.

Hosts and aliases come from ``~/.ssh/config`` (``HostName``, ``User``, ``Port``, ``IdentityFile``), keys
from the ssh-agent or the usual key files, host keys from ``~/.ssh/known_hosts`` - what ``ssh HOST``
would use. ``FIELDTUI_SSH_DIR`` stands in for ``~/.ssh`` (config and known_hosts), for tests and for
technicians who keep a separate set for the field.

Host keys are the root of trust (pairing reads the API token over this link), so:

- a host not in known_hosts is refused with :class:`HostKeyUnknown`, which carries the key's SHA256
  fingerprint; only ``accept_new=True`` (``--accept-new``, the TUI's confirm dialog) accepts it, and then
  the key is appended to known_hosts so the next connection checks against it;
- a host whose key differs from the one in known_hosts is refused with :class:`HostKeyChanged`, always.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from fieldtui.errors import ConsoleError
from fieldtui.protocol import SSHEndpoint
from fieldtui.ssh_upload import copy_file

SSH_DIR_ENV = "FIELDTUI_SSH_DIR"
CONNECT_TIMEOUT_S = 10.0
# Read after ~/.ssh/config, so the technician's own settings win (first value found wins).
CLIENT_DEFAULTS = Path(__file__).with_name("ssh_defaults.conf")
AGENT_CLI = "fieldtui-agent"
SUDO = ["sudo", "-n"]  # never prompt: no terminal over this link, a password prompt would hang
SUDOERS_EXAMPLE = "/opt/fieldtui/bin/fieldtui-agent"  # where README installs it


class SSHError(ConsoleError):
    """The SSH link failed: connection, authentication, host key or a remote command."""


class HostKeyUnknown(SSHError):
    """The host is not in known_hosts; ``fingerprint`` is what the technician must compare and accept."""

    def __init__(self, message: str, *, host: str, fingerprint: str) -> None:
        super().__init__(message)
        self.host = host
        self.fingerprint = fingerprint


class HostKeyChanged(SSHError):
    """The host presented a key other than the one in known_hosts: never accepted."""


class RemoteCommandFailed(SSHError):
    def __init__(self, message: str, *, command: str, exit_status: int | None, stderr: str) -> None:
        super().__init__(message)
        self.command = command
        self.exit_status = exit_status
        self.stderr = stderr


def ssh_dir() -> Path:
    override = os.environ.get(SSH_DIR_ENV)
    return Path(override).expanduser() if override else Path.home() / ".ssh"


def _known_hosts_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _HostKeyCheck(asyncssh.SSHClient):
    """Sees the key asyncssh could not match in known_hosts and decides: accept new, or refuse and say why."""

    def __init__(self, known_hosts: asyncssh.SSHKnownHosts, accept_new: bool) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.seen: tuple[str, int, asyncssh.SSHKey] | None = None
        self.changed = False
        self.accepted = False

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.seen = (host, port, key)
        trusted = asyncssh.match_known_hosts(self.known_hosts, host, addr, port)[0]
        self.changed = bool(trusted)
        self.accepted = self.accept_new and not self.changed
        return self.accepted


def _kind(key: asyncssh.SSHKey) -> str:
    """``ed25519``, ``rsa``, ``ecdsa``: the key's type as OpenSSH names its host key files."""
    name = key.get_algorithm()
    return next((k for k in ("ed25519", "ecdsa", "rsa", "ed448") if k in name), name)


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


class SSHSession:
    """One SSH connection to a device: ``async with await SSHSession.connect(endpoint) as ssh: ...``."""

    def __init__(self, conn: asyncssh.SSHClientConnection, endpoint: SSHEndpoint) -> None:
        self.conn = conn
        self.endpoint = endpoint
        peer = conn.get_extra_info("peername") or (endpoint.host, 0)
        self.address: str = peer[0]  # where ~/.ssh/config sent us: the device's address for HTTP too
        self.user: str = conn.get_extra_info("username") or ""
        self.shell_clean = False  # seen a command's output without a login banner before it

    @classmethod
    async def connect(cls, endpoint: SSHEndpoint, *, accept_new: bool = False) -> SSHSession:
        folder = ssh_dir()
        known_path = folder / "known_hosts"
        try:
            known = asyncssh.read_known_hosts(str(known_path)) if known_path.is_file() else None
        except (OSError, ValueError) as err:
            raise SSHError(f"cannot read {known_path}: {err}; fix or move the file") from None
        known = known or asyncssh.import_known_hosts("")
        check = _HostKeyCheck(known, accept_new)
        config = folder / "config"
        options: dict[str, Any] = {
            "known_hosts": known,
            "client_factory": lambda: check,
            "config": [*([str(config)] if config.is_file() else []), str(CLIENT_DEFAULTS)],
            "connect_timeout": CONNECT_TIMEOUT_S,
        }
        if endpoint.port:
            options["port"] = endpoint.port
        if endpoint.user:
            options["username"] = endpoint.user
        name = endpoint.host
        try:
            conn = await asyncssh.connect(endpoint.host, **options)
        except asyncssh.HostKeyNotVerifiable:
            if check.seen is None:
                raise SSHError(f"SSH host key of {name} could not be verified") from None
            host, port, key = check.seen
            where = _known_hosts_pattern(host, port)
            if check.changed:
                raise HostKeyChanged(
                    f"WARNING: the SSH host key of {where} has CHANGED (now {fingerprint(key)}); someone may "
                    f"be intercepting the connection, or the device was reinstalled. Nothing was sent. If you "
                    f"know why it changed, remove the old key (`ssh-keygen -R '{where}' -f {known_path}`) "
                    "and connect again"
                ) from None
            raise HostKeyUnknown(
                f"{where} is not a known SSH host; its {_kind(key)} key fingerprint is {fingerprint(key)}. "
                f"Compare it with the device's (`ssh-keygen -lf /etc/ssh/ssh_host_{_kind(key)}_key.pub` on "
                "it) and run again with --accept-new to trust it",
                host=where,
                fingerprint=fingerprint(key),
            ) from None
        except asyncssh.PermissionDenied:
            raise SSHError(
                f"SSH to {name} refused every key offered: add your public key to the device's "
                "~/.ssh/authorized_keys, load it into ssh-agent, or name it with IdentityFile in ~/.ssh/config"
            ) from None
        except (asyncssh.Error, OSError, TimeoutError) as err:
            reason = (
                getattr(err, "reason", None)
                or getattr(err, "strerror", None)
                or str(err)
                or type(err).__name__
            )
            raise SSHError(f"cannot open SSH to {name}: {reason}") from None
        if check.accepted and check.seen is not None:
            _remember(known_path, *check.seen)
        return cls(conn, endpoint)

    async def __aenter__(self) -> SSHSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()

    # --- commands ---------------------------------------------------------------------------------

    async def run(
        self, argv: list[str], *, check: bool = True, what: str | None = None, input: str | None = None
    ) -> Any:
        """Run ``argv`` on the device (quoted for its shell); the asyncssh result. A non-zero exit is
        :class:`RemoteCommandFailed` naming the command and its last stderr line unless ``check=False``.
        ``input`` goes to its stdin: a secret there is not on a command line any device user can read."""
        command = shlex.join(argv)
        try:
            result = await self.conn.run(command, check=False, input=input)
        except (asyncssh.Error, OSError) as err:
            raise SSHError(f"SSH to {self.endpoint.host} dropped while running `{argv[0]}`: {err}") from None
        sudo_agent = argv[: len(SUDO) + 1] == [*SUDO, AGENT_CLI]
        if result.exit_status != 0 and sudo_agent and sudo_wants_password(result.stderr or ""):
            user = self.user or "USER"  # raised even with check=False: nothing ran
            raise SSHError(
                f"sudo on {self.endpoint.host} needs a password: allow `{AGENT_CLI}` for {user} in "
                f"sudoers (`{user} ALL=(root) NOPASSWD: {SUDOERS_EXAMPLE}`)"
            )
        if check and result.exit_status != 0:
            raise remote_failure(argv, result.exit_status, result.stderr or "", self.endpoint.host, what)
        return result

    def agent_argv(self, *args: str, home: bool = True) -> list[str]:
        """``[sudo -n] fieldtui-agent ARGS [--home DIR]``: ``home=False`` for commands without ``--home``;
        ``sudo -n`` when the endpoint says the SSH user cannot read the agent home itself."""
        argv = [*SUDO, AGENT_CLI, *args] if self.endpoint.sudo else [AGENT_CLI, *args]
        if home and self.endpoint.agent_home:
            argv += ["--home", self.endpoint.agent_home]
        return argv

    async def agent_json(self, *args: str, home: bool = True) -> str:
        """Stdout of ``fieldtui-agent ARGS --json``: one JSON document to parse into a protocol model."""
        argv = self.agent_argv(*args, "--json", home=home)
        return self.json_out(await self.run(argv))

    def json_out(self, result: Any) -> str:
        """The stdout of a ``--json`` command; :class:`SSHError` when the login shell printed text before
        it (an unguarded ``echo`` in ~/.bashrc: Debian's bash reads it for commands over SSH too)."""
        out = result.stdout or ""
        lines = out.lstrip().splitlines()
        if lines and lines[0][:1] not in "{[" and any(ln[:1] in "{[" for ln in lines[1:]):
            raise self._banner(lines[0])
        self.shell_clean = self.shell_clean or bool(lines)
        return out

    async def check_shell(self) -> None:
        """Before a command that changes the device: make sure its output will be readable (``true``
        prints nothing unless the login shell does), so a banner is reported before anything ran."""
        if not self.shell_clean:
            lines = ((await self.run(["true"])).stdout or "").strip().splitlines()
            if lines:
                raise self._banner(lines[0])
            self.shell_clean = True

    def _banner(self, first: str) -> SSHError:
        return SSHError(
            f"the login shell on {self.endpoint.host} prints {first.strip()[:60]!r} before every "
            "command's output: make it print only in interactive shells (in ~/.bashrc, below "
            "`case $- in *i*) ;; *) return;; esac`) and try again"
        )

    # --- files ------------------------------------------------------------------------------------

    async def upload(
        self, local: Path, remote: str, on_progress: Callable[[int, int], None] | None = None
    ) -> str:
        """Copy ``local`` to ``remote`` (its folder made 0700 if missing), reporting (done, total) bytes:
        SFTP within the server's limits, else streamed through ``cat`` (:mod:`fieldtui.ssh_upload`).
        Returns the way it went; :class:`~fieldtui.ssh_upload.UploadFailed` with one line otherwise."""
        return await copy_file(self.conn, self.endpoint.host, local, remote, on_progress or _no_progress)

    async def remove(self, remote: str, *, folder: bool = False) -> None:
        """Delete ``remote`` (a whole folder with ``folder=True``) if it is there. Raises SSHError only
        when the link is gone, so the caller can try again over a new one."""
        await self.run(["rm", "-rf" if folder else "-f", "--", remote], check=False)

    async def sha256(self, remote: str) -> str:
        """The sha256 of a file on the device: ``sha256sum``, else Python's hashlib."""
        result = await self.run(["sha256sum", "--", remote], check=False)
        if result.exit_status == 127:  # no coreutils (BusyBox images may lack it)
            script = (
                "import hashlib,sys;print(hashlib.file_digest(open(sys.argv[1],'rb'),'sha256').hexdigest())"
            )
            result = await self.run(["python3", "-c", script, remote], what="sha256 check (python3)")
        elif result.exit_status != 0:
            raise remote_failure(
                ["sha256sum"], result.exit_status, result.stderr or "", self.endpoint.host, None
            )
        return (result.stdout or "").split()[0] if result.stdout else ""


def _no_progress(done: int, total: int) -> None:
    pass


def sudo_wants_password(stderr: str) -> bool:
    """``sudo -n`` refused because it would have to ask (sudo's own words)."""
    return "password is required" in stderr or "terminal is required" in stderr


def remote_failure(
    argv: list[str], status: int | None, stderr: str, host: str, what: str | None
) -> RemoteCommandFailed:
    """``remote `fieldtui-agent models add` failed (exit 2): <its last stderr line>``."""
    command, program = shlex.join(argv), argv[0]
    if argv[: len(SUDO) + 1] == [*SUDO, AGENT_CLI]:
        argv = argv[len(SUDO) :]  # named as the agent command; ``command`` keeps the sudo
    if what is None:
        words = [w for w in argv if not w.startswith("-") and "/" not in w]
        what = " ".join(words[: 3 if argv[0] == AGENT_CLI else 2])
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "(nothing on stderr)"
    if status == 127:
        line = f"{program} not found on {host}: is it installed and on the PATH of the SSH user?"
    return RemoteCommandFailed(
        f"remote `{what}` failed (exit {status}): {line}",
        command=command,
        exit_status=status,
        stderr=stderr,
    )


def _remember(path: Path, host: str, port: int, key: asyncssh.SSHKey) -> None:
    """Append an accepted key to known_hosts (0600 in a 0700 folder, like OpenSSH keeps it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    algorithm, blob = key.export_public_key("openssh").decode().split()[:2]  # without the comment
    line = f"{_known_hosts_pattern(host, port)} {algorithm} {blob}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(line)
