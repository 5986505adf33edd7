"""Real SSH servers for tests: Debian's OpenSSH ``sshd`` and Dropbear on 127.0.0.1, logging in a
throw-away device user that runs the real ``fieldtui-agent`` of this checkout's venv.

- :class:`DeviceUser`: a user made with ``useradd`` for the test session (bash, a home under /home with
  ``~/.ssh/authorized_keys`` holding the console's key, a ``*`` password field: key logins only) and
  removed with ``userdel -r`` afterwards. Its agent home is the non-root default,
  ``~/.local/share/fieldtui-agent``.
- :class:`OpenSSHServer`: ``/usr/sbin/sshd -D -e -f <own sshd_config>`` with a throw-away host key,
  ``Subsystem sftp internal-sftp`` (or none: a device without SFTP), ``AllowUsers`` the device user and
  ``SetEnv PATH=`` the venv's bin first, the way a device puts the agent on the SSH user's PATH. sshd
  cannot listen on port 0: a free port is picked (and picked again if another process took it first).
- :class:`DropbearServer`: ``dropbear -F -E -s -p 127.0.0.1:PORT -r KEY`` (keys converted with
  ``dropbearconvert``). Dropbear sets its own compiled-in PATH, so it runs in a private mount namespace
  where ``/usr/local/bin`` holds the ``fieldtui-agent`` link (README's ``ln -s``); ``sftp=False`` hides
  ``/usr/lib/openssh/sftp-server`` there too: Dropbear as Yocto and Buildroot images ship it.
- Where the interpreter of the venv lies under a folder the device user may not enter (a pyenv in
  ``/root``), servers and device-side agents run in a private mount namespace whose view of that folder
  shows only the interpreter's tree (:func:`device_mounts`); nothing changes on the machine itself.
- :func:`start_agent_as`: a serving agent as the device user, from its default home.

The pytest fixtures built on these are in tests/real_ssh_fixtures.py.

Skips say why when no server can be had (not root, binaries missing, no mount namespaces).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
DROPBEAR = "/usr/sbin/dropbear"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's own bin, where fieldtui-agent is
AGENT = VENV_BIN / "fieldtui-agent"
START_TIMEOUT_S = 10.0
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def why_no_sshd(binary: str = SSHD) -> str | None:
    """Why a real SSH server cannot run here, or None."""
    if os.geteuid() != 0:
        return f"{binary} must start as root to log users in (and useradd needs root)"
    for tool in (binary, "/usr/sbin/useradd", "/usr/sbin/userdel", "/usr/bin/ssh-keygen"):
        if not Path(tool).exists():
            return f"{tool} is missing (apt install openssh-server dropbear-bin passwd)"
    if not AGENT.exists():
        return f"{AGENT} is missing: install this checkout in its venv (make .venv/.installed-dev)"
    if (device_mounts() or binary == DROPBEAR) and not namespaces_work():
        return "private mount namespaces (unshare -m) are not available here"
    return None


def namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True)
    return path


def fingerprint_of(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


# --- the device user --------------------------------------------------------------------------


class DeviceUser:
    """A throw-away login on this machine; ``reset()`` gives each test a fresh home."""

    def __init__(self, client_pub: str) -> None:
        self.name = f"ftui{secrets.token_hex(3)}"
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", self.name],
            check=True,
            capture_output=True,
        )
        subprocess.run(["usermod", "-p", "*", self.name], check=True)  # not locked, no password
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)
        self.client_pub = client_pub
        self.reset()

    @property
    def agent_home(self) -> Path:
        return self.home / ".local" / "share" / "fieldtui-agent"

    def reset(self) -> None:
        """The home as useradd made it, with the console's key authorized (0700/0600: StrictModes)."""
        for entry in self.home.iterdir():
            if entry.is_dir() and not entry.is_symlink() and not os.path.ismount(entry):
                shutil.rmtree(entry)
            elif not entry.is_dir():
                entry.unlink()
        for skel in Path("/etc/skel").iterdir():
            if skel.is_file():
                shutil.copy(skel, self.home / skel.name)
        ssh = self.home / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(self.client_pub)
        (ssh / "authorized_keys").chmod(0o600)
        self.chown(self.home)

    def chown(self, path: Path) -> None:
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, self.uid, self.gid)

    def write(self, relative: str, text: str, mode: int = 0o644) -> Path:
        """A file in the user's home, owned by the user (folders made as needed)."""
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        self.chown(self.home)
        return path

    def remove(self) -> None:
        subprocess.run(["pkill", "-KILL", "-u", self.name], capture_output=True)
        subprocess.run(["userdel", "--remove", self.name], capture_output=True)


# --- the device's view of the machine ----------------------------------------------------------


def device_mounts() -> list[tuple[str, str]]:
    """Bind mounts that let a non-root user run this venv's interpreter: empty when it already can.

    The interpreter's real path is walked upwards; the first folder others may not enter (``/root`` for
    a pyenv there) is replaced, in the namespace only, by a 0755 view holding just the way down."""
    real = Path(os.path.realpath(sys.executable))
    for folder in reversed(real.parents[:-1]):  # from / downwards
        if not folder.stat().st_mode & 0o001:
            child = real.parents[real.parents.index(folder) - 1] if folder != real.parent else real
            return [(str(folder), str(child))]
    return []


def namespace_script(view: Path, binds: list[tuple[str, str]]) -> str:
    """Shell lines run in a fresh mount namespace before ``exec "$@"``: the interpreter made reachable
    (``view`` is a scratch folder), then each (source, target) bind."""
    lines = ["set -e"]
    for locked, child in device_mounts():
        inside = view / Path(child).name
        inside.mkdir(parents=True, exist_ok=True)
        view.chmod(0o755)
        lines += [f"mount --bind {shlex.quote(child)} {shlex.quote(str(inside))}"]
        lines += [f"mount --rbind {shlex.quote(str(view))} {shlex.quote(locked)}"]  # with the bind above
    for source, target in binds:
        lines.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def in_namespace(argv: list[str], view: Path, binds: list[tuple[str, str]] | None = None) -> list[str]:
    """``argv`` run in a private mount namespace (only when mounts are needed)."""
    if not device_mounts() and not binds:
        return argv
    return ["unshare", "-m", "sh", "-c", namespace_script(view, binds or []), "sh", *argv]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd's per-connection children and what they run)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# --- servers ----------------------------------------------------------------------------------


class RealServer:
    """What OpenSSH and Dropbear share: keys, a port, start/stop, the console's ~/.ssh lines."""

    name = "ssh"

    def __init__(self, base: Path, user: DeviceUser, *, sftp: bool = True, agent_on_path: bool = True):
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.sftp = sftp
        self.agent_on_path = agent_on_path
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = base / f"{self.name}.log"
        self.make_host_keys()

    # subclasses: make_host_keys(), command()
    def make_host_keys(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def host_pub(self) -> Path:
        return self.base / "host_ed25519.pub"

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.host_pub)

    @property
    def fingerprints(self) -> dict[str, str]:
        """Every host key's fingerprint -> its ``ssh-keygen -lf`` line's type (ED25519, RSA)."""
        return {fingerprint_of(pub): pub.stem.split("_")[1] for pub in self.base.glob("host_*.pub")}

    def known_hosts_line(self) -> str:
        kind, blob = self.host_pub.read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def start(self, port: int | None = None) -> RealServer:
        for _ in range(1 if port else 5):  # a free port can be taken before the server binds it
            self.port = port or free_port()
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
                )
            if self._wait_listening():
                return self
        raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text(errors='replace')}")

    def _wait_listening(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as s:
                s.settimeout(2)
                if s.recv(8).startswith(b"SSH-"):
                    return True
            time.sleep(0.02)
        self.stop()
        return False

    def drop_connections(self) -> int:
        """SIGKILL every per-connection process: the server side of each session dies at once."""
        assert self.proc is not None
        pids = descendants(self.proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = descendants(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for pid in pids:  # sessions whose connection is still open
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def replace_host_key(self) -> None:
        """Restart on the same port with a new host key: a reinstalled (or spoofed) device."""
        self.stop()
        for key in self.base.glob("host_*"):
            key.unlink()
        self.make_host_keys()
        self.start(self.port)

    def write_console_ssh(self, dot_ssh: Path, alias: str, key: Path, *, known: bool = True) -> None:
        """The technician's ~/.ssh: ``Host alias`` -> this server, and its host key if ``known``."""
        dot_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (dot_ssh / "config").write_text(
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user.name}\n"
            f"  IdentityFile {key}\n  IdentitiesOnly yes\n"
        )
        if known:
            (dot_ssh / "known_hosts").write_text(self.known_hosts_line())


class OpenSSHServer(RealServer):
    name = "openssh"

    def make_host_keys(self) -> None:
        keygen(self.base / "host_ed25519")  # 0600 root: sshd refuses an unprotected host key

    def config(self) -> str:
        path = f"{VENV_BIN}:{BASE_PATH}" if self.agent_on_path else BASE_PATH
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.base / 'host_ed25519'}",
            "PidFile none",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {self.user.name}",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "StrictModes yes",
            "PrintMotd no",
            "UseDNS no",
            f"SetEnv PATH={path}",
            "LogLevel VERBOSE",
        ]
        if self.sftp:
            lines.append("Subsystem sftp internal-sftp")
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation; kept for other sshds
        config = self.base / "sshd_config"
        config.write_text(self.config())
        return in_namespace([SSHD, "-D", "-e", "-f", str(config)], self.base / "view")


class DropbearServer(RealServer):
    name = "dropbear"

    def make_host_keys(self) -> None:
        keygen(self.base / "host_ed25519")
        convert = ["dropbearconvert", "openssh", "dropbear"]
        subprocess.run(
            [*convert, str(self.base / "host_ed25519"), str(self.base / "host_ed25519.db")],
            check=True,
            capture_output=True,
        )
        # Dropbear 2022.83 asserts on rsa-sha2 signatures without an RSA key: devices have one anyway
        keygen(self.base / "host_rsa", "rsa")
        subprocess.run(
            [*convert, str(self.base / "host_rsa"), str(self.base / "host_rsa.db")],
            check=True,
            capture_output=True,
        )

    def command(self) -> list[str]:
        local_bin = self.base / "usr-local-bin"
        local_bin.mkdir(mode=0o755, exist_ok=True)
        link = local_bin / "fieldtui-agent"
        if self.agent_on_path and not link.is_symlink():
            link.symlink_to(AGENT)
        binds = [(str(local_bin), "/usr/local/bin")]
        if not self.sftp:
            binds.append(("/dev/null", SFTP_SERVER))
        argv = [DROPBEAR, "-F", "-E", "-s", "-p", f"127.0.0.1:{self.port}", "-P", str(self.base / "pid")]
        argv += ["-r", str(self.base / "host_ed25519.db"), "-r", str(self.base / "host_rsa.db")]
        return in_namespace(argv, self.base / "view", binds)


# --- a serving agent as the device user --------------------------------------------------------


def device_env(user: DeviceUser) -> dict[str, str]:
    return {
        "HOME": str(user.home),
        "USER": user.name,
        "LOGNAME": user.name,
        "PATH": f"{VENV_BIN}:{BASE_PATH}",
        "LANG": "C.UTF-8",
    }


def start_agent_as(
    user: DeviceUser, base: Path, model: Path, log: Path, source: str | None = "demo:"
) -> subprocess.Popen:
    """``fieldtui-agent serve`` as ``user`` from its default home (setpriv, no fork: the pid is the
    agent's), on 127.0.0.1 with the demo source (``source=None``: the cameras of its config.toml) and
    ``model`` (copied into the user's home)."""
    mine = user.home / "models-in" / model.name
    mine.parent.mkdir(exist_ok=True)
    shutil.copy(model, mine)
    user.chown(user.home)
    argv = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--"]
    argv += [str(AGENT), "serve", "--host", "127.0.0.1", "--port", "0", "--no-mdns"]
    argv += ["--model", str(mine), *(["--source", source] if source is not None else [])]
    with open(log, "wb") as out:
        return subprocess.Popen(
            in_namespace(argv, base / "agent-view"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=device_env(user),
            cwd=user.home,
        )
