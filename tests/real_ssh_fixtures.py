"""Fixtures for tests against real SSH servers (tests/real_sshd.py), imported by the test modules that use
them: ``laptop`` (the technician's HOME with ~/.ssh), ``device`` (the throw-away device user, a fresh home
per test), ``real_server`` (a factory: OpenSSH or Dropbear for that user, written into the laptop's
~/.ssh/config as ``Host fielddev``) and ``device_agent`` (a serving agent as the device user)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunningAgent, _terminate, wait_for_runtime
from tests.real_sshd import (
    DROPBEAR,
    DeviceUser,
    DropbearServer,
    OpenSSHServer,
    RealServer,
    keygen,
    start_agent_as,
    why_no_sshd,
)

ALIAS = "fielddev"


@dataclass
class Laptop:
    """The technician's side: a temporary HOME with ~/.ssh (config, known_hosts, the key) and
    ~/.config/fieldtui, found the default way (no FIELDTUI_* overrides)."""

    home: Path
    dot_ssh: Path
    key: Path

    @property
    def devices_json(self) -> Path:
        return self.home / ".config" / "fieldtui" / "devices.json"


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keygen(tmp_path_factory.mktemp("client-key") / "id_ed25519")


@pytest.fixture(scope="session")
def device_user(client_key: Path) -> Iterator[DeviceUser]:
    reason = why_no_sshd()
    if reason:
        pytest.skip(reason)
    user = DeviceUser(client_key.with_suffix(".pub").read_text())
    yield user
    user.remove()


@pytest.fixture
def device(device_user: DeviceUser) -> Iterator[DeviceUser]:
    """The device user with a fresh home and an agent home whose probation is off (tests move on)."""
    device_user.reset()
    device_user.write(".local/share/fieldtui-agent/config.toml", "[models]\nprobation_s = 0\n", 0o600)
    device_user.agent_home.chmod(0o700)
    yield device_user
    subprocess.run(["pkill", "-KILL", "-u", device_user.name], capture_output=True)
    device_user.reset()


@pytest.fixture
def laptop(tmp_path: Path, client_key: Path, monkeypatch: pytest.MonkeyPatch) -> Laptop:
    home = tmp_path / "laptop"
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(mode=0o700, parents=True)
    key = dot_ssh / "id_ed25519"
    shutil.copy(client_key, key)
    key.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    for var in ("FIELDTUI_SSH_DIR", "FIELDTUI_CONFIG_DIR", "XDG_CONFIG_HOME", "SSH_AUTH_SOCK"):
        monkeypatch.delenv(var, raising=False)
    return Laptop(home, dot_ssh, key)


@pytest.fixture
def real_server(tmp_path: Path, device: DeviceUser, laptop: Laptop) -> Iterator[Callable[..., RealServer]]:
    """Factory: ``real_server(kind="openssh"|"dropbear", known=True, sftp=True, agent_on_path=True)``
    starts that server for the device user and writes the laptop's ``Host fielddev`` for it."""
    servers: list[RealServer] = []

    def start(kind: str = "openssh", *, known: bool = True, **options: bool) -> RealServer:
        cls = OpenSSHServer if kind == "openssh" else DropbearServer
        if kind == "dropbear" and (reason := why_no_sshd(DROPBEAR)):
            pytest.skip(reason)
        server = cls(tmp_path / f"{kind}-{len(servers)}", device, **options)
        servers.append(server)
        server.start()
        server.write_console_ssh(laptop.dot_ssh, ALIAS, laptop.key, known=known)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def device_agent(
    tmp_path: Path, device: DeviceUser, tiny_model: Path
) -> Iterator[Callable[[], RunningAgent]]:
    """Factory: a serving agent as the device user, from its default home (stopped at teardown);
    ``source=None``: the cameras of the home's config.toml instead of the demo camera."""
    procs: list[subprocess.Popen] = []

    def start(source: str | None = "demo:") -> RunningAgent:
        log = tmp_path / f"device-agent-{len(procs)}.log"
        proc = start_agent_as(device, tmp_path, tiny_model, log, source)
        procs.append(proc)
        info = wait_for_runtime(device.agent_home, proc, log)
        token = (device.agent_home / "token").read_text().strip()
        return RunningAgent(
            url=info["api_url"],
            token=token,
            home=device.agent_home,
            proc=proc,
            stderr_path=log,
            _stop=lambda: _terminate(proc),
        )

    yield start
    for proc in procs:
        _terminate(proc)
