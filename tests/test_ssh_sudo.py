"""A device whose agent home only root may read (the systemd service's): pairing falls back to
``sudo -n``, every agent command then runs through it, and a push goes through a private folder in the
SSH user's home. Real asyncssh server on 127.0.0.1, real agent CLI and store; only ``sudo`` is a fake
(this machine's sudo cannot be configured by a test), and the unreadable home is a wrapper's refusal."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from fieldtui.protocol import DeviceRecord, DeviceStatus, Job, ModelList, PushResult
from tests import storemodels as sm
from tests.console_cli import fail_line, ok_json, run
from tests.ssh_server import SSHTestServer

# A FAKE sudo: refuses without -n (a real one would prompt, and nothing could answer), records each
# call, says what the real one says when a password would be needed ("password" file present), and
# otherwise runs the rest of its argv as this same user, marked FIELDTUI_TEST_SUDO=1 for the wrapper.
FAKE_SUDO = """#!/bin/sh
echo "$*" >> {log}
[ "$1" = "-n" ] || {{ echo "fake sudo: refusing to prompt without -n" >&2; exit 1; }}
shift
if [ -e {password} ]; then echo "sudo: a password is required" >&2; exit 1; fi
FIELDTUI_TEST_SUDO=1 exec "$@"
"""

# The agent CLI from this checkout, on the PATH as on a device. With the "locked" file present it stands
# for a home the SSH user may not read: outside the fake sudo it fails as Python does on a 0700 folder.
AGENT_WRAPPER = """#!/bin/sh
if [ -e {locked} ] && [ -z "$FIELDTUI_TEST_SUDO" ]; then
  echo "PermissionError: [Errno 13] Permission denied: '$FIELDTUI_AGENT_HOME/token'" >&2
  exit 1
fi
exec {python} -m agent "$@"
"""


class Device:
    def __init__(self, tmp: Path, server: SSHTestServer, shims: Path) -> None:
        self.server = server
        self.sudo_log = tmp / "sudo.log"
        self.password = tmp / "sudo-wants-password"
        self.locked = tmp / "home-locked"
        self.tech_home = tmp / "tech-home"  # $HOME of the SSH user
        (shims / "sudo").write_text(FAKE_SUDO.format(log=self.sudo_log, password=self.password))
        (shims / "fieldtui-agent").write_text(AGENT_WRAPPER.format(locked=self.locked, python=sys.executable))
        for f in shims.iterdir():
            f.chmod(0o755)

    def sudo_calls(self) -> list[str]:
        return self.sudo_log.read_text().splitlines() if self.sudo_log.exists() else []

    def push_folders(self) -> list[Path]:
        return sorted((self.tech_home / ".cache").glob("fieldtui-push.*"))


@pytest.fixture
def device(tmp_path: Path, agent_home: Path, monkeypatch: pytest.MonkeyPatch) -> Device:
    (agent_home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "console"))
    (tmp_path / "tech-home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "tech-home"))  # the server's shells inherit it
    shims = tmp_path / "shims"
    shims.mkdir()
    server = SSHTestServer(tmp_path, agent_home, path_prepend=shims).start()
    folder = server.write_client_dir(tmp_path / "dot-ssh", "dock-1")
    monkeypatch.setenv("FIELDTUI_SSH_DIR", str(folder))
    yield Device(tmp_path, server, shims)
    server.stop()


async def ssh_models(record: DeviceRecord) -> ModelList:
    from fieldtui.link.fallback import SSHLink

    assert record.ssh is not None
    async with SSHLink(record.ssh) as link:
        return await link.models()


PASSWORD_LINE = (
    "fieldtui: sudo on dock-1 needs a password: allow `fieldtui-agent` for tech in sudoers "
    "(`tech ALL=(root) NOPASSWD: /opt/fieldtui/bin/fieldtui-agent`)"
)


def test_pairing_falls_back_to_sudo_when_the_home_is_unreadable(capsys, device):
    device.locked.touch()
    code, out, err = run(capsys, "pair", "dock-1")
    assert code == 0, err
    assert "run with `sudo -n`" in out
    assert device.sudo_calls() == ["-n fieldtui-agent token --json"]
    saved = json.loads((Path(device.server.tmp) / "console" / "devices.json").read_text())["devices"][0]
    assert saved["device"]["ssh"]["sudo"] is True and saved["token"]
    # The first try ran as the SSH user and was refused; the second went through sudo.
    assert device.server.commands == ["fieldtui-agent token --json", "sudo -n fieldtui-agent token --json"]

    ds = DeviceStatus.model_validate(ok_json(capsys, "status", "dock-1", "--ssh", "--json"))
    assert ds.device.id == saved["device"]["id"]
    assert device.sudo_calls()[-1] == "-n fieldtui-agent status --json"


def test_pairing_without_the_need_leaves_sudo_alone(capsys, device):
    record = DeviceRecord.model_validate(ok_json(capsys, "pair", "dock-1", "--json"))
    assert record.ssh is not None and record.ssh.sudo is False
    ok_json(capsys, "status", "dock-1", "--ssh", "--json")
    assert device.sudo_calls() == []


def test_pairing_fallback_when_sudo_wants_a_password(capsys, device):
    device.locked.touch()
    device.password.touch()
    assert fail_line(capsys, "pair", "dock-1") == PASSWORD_LINE
    assert not (Path(device.server.tmp) / "console" / "devices.json").exists()


def test_a_sudo_device_pushes_through_a_private_folder_and_activates(capsys, device, agent_home, tmp_path):
    device.locked.touch()  # nothing works without sudo from here on
    record = DeviceRecord.model_validate(ok_json(capsys, "pair", "dock-1", "--sudo", "--json"))
    assert record.ssh is not None and record.ssh.sudo
    assert device.server.commands == ["sudo -n fieldtui-agent token --json"]  # --sudo: no first try

    v1 = sm.detector(tmp_path / "v1.onnx", seed=1)
    code, out, err = run(
        capsys, "push", "dock-1", str(v1), "--version", "v1", "--activate", "--ssh", "--json"
    )
    assert code == 0, err
    pushed = PushResult.model_validate_json(out)
    assert pushed.uploaded and pushed.version.manifest.sha256 == sm.sha256(v1)
    assert pushed.activation is not None and pushed.activation.state == "succeeded"

    calls = device.sudo_calls()
    adds = [c for c in calls if c.startswith("-n fieldtui-agent models add ")]
    assert len(adds) == 1
    uploaded = adds[0].split()[4]
    assert uploaded.startswith(f"{device.tech_home}/.cache/fieldtui-push.") and uploaded.endswith(".onnx")
    assert f"--sha256 {sm.sha256(v1)}" in adds[0]
    assert "-n fieldtui-agent models activate v1 --json" in calls
    assert not any(" home " in c for c in calls)  # the agent's staging area is not asked for
    assert f"sha256sum -- {uploaded}" in device.server.commands  # checked there, as the SSH user
    assert device.push_folders() == [] and not Path(uploaded).exists()

    listing = asyncio.run(ssh_models(record))
    assert (
        isinstance(listing, ModelList) and device.sudo_calls()[-1] == "-n fieldtui-agent models list --json"
    )
    (stored,) = [v for v in listing.versions if v.version == "v1"]
    assert stored.manifest.sha256 == sm.sha256(v1)
    assert sm.sha256(next((agent_home / "models" / "v1").glob("*.onnx"))) == sm.sha256(v1)
    staging = agent_home / "models" / ".staging"
    assert not staging.exists() or not list(staging.glob("ssh-*"))

    bogus = tmp_path / "notes.onnx"  # models add fails: the private folder still goes
    bogus.write_text("these are my notes, not a model\n" * 10)
    line = fail_line(capsys, "push", "dock-1", str(bogus), "--version", "v9", "--ssh")
    assert line.startswith("fieldtui: remote `fieldtui-agent models add` failed (exit 2): ")
    assert "v9 is not an ONNX model" in line
    assert device.push_folders() == [] and not (agent_home / "models" / "v9").exists()

    job = Job.model_validate(ok_json(capsys, "rollback", "dock-1", "--ssh", "--json"))
    assert job.state in ("succeeded", "failed")  # one version only: what matters is who ran it
    assert device.sudo_calls()[-1] == "-n fieldtui-agent models rollback --json"


def test_sudo_wanting_a_password_is_one_line(capsys, device, tmp_path):
    ok_json(capsys, "pair", "dock-1", "--sudo", "--json")
    device.password.touch()
    assert fail_line(capsys, "status", "dock-1", "--ssh") == PASSWORD_LINE
    assert fail_line(capsys, "rollback", "dock-1", "--ssh") == PASSWORD_LINE  # a job: check=False there
    v1 = sm.detector(tmp_path / "v1.onnx")
    assert fail_line(capsys, "push", "dock-1", str(v1), "--version", "v1", "--ssh") == PASSWORD_LINE
    assert device.push_folders() == [] and all(c.startswith("-n ") for c in device.sudo_calls())
