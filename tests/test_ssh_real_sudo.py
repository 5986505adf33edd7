# ruff: noqa: F811  (the fixtures imported from tests.real_ssh_fixtures are parameters here)
"""The sudo path against Debian's real ``sudo``, over real OpenSSH: the agent runs as root from a home
the SSH user may not read (the packaged unit's private ``StateDirectory``), so pairing falls back to
``sudo -n`` by itself and every agent command then runs through it; a push goes through a private
folder in the SSH user's home. The rules are a NOPASSWD line in a temporary /etc/sudoers.d file
(checked with ``visudo -cf``, removed afterwards) with the agent's folder on sudo's ``secure_path``, as
README says. ``systemctl`` is the one stand-in (a script first on that secure_path, recording who ran
it): this machine's systemd is not the test's to restart."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldtui.protocol import DeviceRecord, DeviceStatus, Job, LogPage, PushResult
from tests import storemodels as sm
from tests.console_cli import fail_line, ok_json, run
from tests.real_ssh_fixtures import (  # noqa: F401  (fixtures)
    ALIAS,
    client_key,
    device,
    device_user,
    laptop,
    real_server,
)
from tests.real_sshd import AGENT, VENV_BIN, DeviceUser
from tests.test_ssh_openssh import big_model, live_version

SYSTEMCTL = '#!/bin/sh\necho "$(id -u) $*" >> {log}\n'


class Sudoers:
    def __init__(self, user: DeviceUser, shims: Path) -> None:
        self.user = user
        self.shims = shims
        self.path = Path(f"/etc/sudoers.d/fieldtui-test-{user.name}")  # no dot: sudo reads it

    def allow(self, *commands: str) -> None:
        """Exactly these NOPASSWD commands for the device user (none: sudo wants a password)."""
        lines = [
            f'Defaults:{self.user.name} secure_path="{self.shims}:{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"'
        ]
        if commands:
            lines.append(f"{self.user.name} ALL=(root) NOPASSWD: {', '.join(commands)}")
        draft = self.shims.parent / "sudoers-draft"
        draft.write_text("\n".join(lines) + "\n")
        draft.chmod(0o440)
        check = subprocess.run(["visudo", "-cf", str(draft)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        draft.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def sudoers(tmp_path: Path, device: DeviceUser) -> Iterator[Sudoers]:
    if not Path("/usr/bin/sudo").exists() or not Path("/etc/sudoers.d").is_dir():
        pytest.skip("sudo is not installed (apt install sudo)")
    shims = tmp_path / "sbin"
    shims.mkdir()
    (shims / "systemctl").write_text(SYSTEMCTL.format(log=tmp_path / "systemctl.log"))
    (shims / "systemctl").chmod(0o755)
    rules = Sudoers(device, shims)
    yield rules
    rules.remove()


@pytest.fixture
def private_home(tmp_path: Path) -> Path:
    """The agent's home as the systemd unit has it: root's, 0700, under a folder only root may enter."""
    home = tmp_path / "var-lib" / "fieldtui-agent"
    home.mkdir(parents=True, mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    return home


def password_line(user: str) -> str:
    return (
        f"fieldtui: sudo on {ALIAS} needs a password: allow `fieldtui-agent` for {user} in sudoers "
        f"(`{user} ALL=(root) NOPASSWD: /opt/fieldtui/bin/fieldtui-agent`)"
    )


def push_folders(device: DeviceUser) -> list[Path]:
    return sorted((device.home / ".cache").glob("fieldtui-push.*"))


def test_a_private_agent_home_is_reached_through_real_sudo(
    capsys, laptop, device, real_server, sudoers, private_home, start_agent, tmp_path
):
    sudoers.allow(str(AGENT), f"{sudoers.shims}/systemctl restart fieldtui-agent")
    agent = start_agent(private_home)  # as root, like the unit
    real_server("openssh")

    code, out, err = run(capsys, "pair", ALIAS, "--agent-home", str(private_home))
    assert code == 0, err
    assert "run with `sudo -n`" in out  # found out by itself: the first try was refused
    record = DeviceRecord.model_validate(json.loads(laptop.devices_json.read_text())["devices"][0]["device"])
    assert record.ssh is not None and record.ssh.sudo and record.ssh.agent_home == str(private_home)

    ds = DeviceStatus.model_validate(ok_json(capsys, "status", ALIAS, "--ssh", "--json"))
    assert ds.device.id == record.id and ds.status.state == "running"

    v1 = big_model(tmp_path / "v1.onnx")
    code, out, err = run(capsys, "push", ALIAS, str(v1), "--version", "v1", "--activate", "--ssh", "--json")
    assert code == 0, err
    pushed = PushResult.model_validate_json(out)
    assert pushed.version.manifest.sha256 == sm.sha256(v1) and pushed.activation.state == "succeeded"
    assert live_version(agent) == "v1" and push_folders(device) == []
    assert (private_home / "models" / "v1").stat().st_uid == 0  # stored by root, through sudo

    job = Job.model_validate(ok_json(capsys, "rollback", ALIAS, "--ssh", "--json"))
    assert job.state == "succeeded" and live_version(agent) != "v1"
    page = LogPage.model_validate(ok_json(capsys, "logs", ALIAS, "--ssh", "--json"))
    assert any("v1" in line.message for line in page.lines)

    code, out, err = run(capsys, "restart", ALIAS, "--ssh")
    assert code == 0, err
    assert (tmp_path / "systemctl.log").read_text() == "0 restart fieldtui-agent\n"  # as root, by sudo


def test_sudo_that_wants_a_password_is_one_line(
    capsys, laptop, device, real_server, sudoers, private_home, tmp_path
):
    sudoers.allow()  # secure_path only: every sudo command wants a password
    real_server("openssh")
    assert fail_line(capsys, "pair", ALIAS, "--agent-home", str(private_home)) == password_line(device.name)
    assert not laptop.devices_json.exists()

    sudoers.allow(str(AGENT))
    ok_json(capsys, "pair", ALIAS, "--agent-home", str(private_home), "--json")
    sudoers.allow()
    assert fail_line(capsys, "status", ALIAS, "--ssh") == password_line(device.name)
    assert fail_line(capsys, "rollback", ALIAS, "--ssh") == password_line(device.name)
    v1 = big_model(tmp_path / "v1.onnx")
    assert fail_line(capsys, "push", ALIAS, str(v1), "--version", "v1", "--ssh") == password_line(device.name)
    assert push_folders(device) == [] and not (private_home / "models" / "v1").exists()
    assert fail_line(capsys, "restart", ALIAS, "--ssh") == (
        f"fieldtui: sudo on {ALIAS} needs a password: allow `systemctl restart fieldtui-agent` for "
        f"{device.name} in sudoers, or restart by hand"
    )
    assert not (tmp_path / "systemctl.log").exists()
