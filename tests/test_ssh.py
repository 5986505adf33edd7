"""The SSH path end to end: ``fieldtui`` CLI -> asyncssh -> a real SSH server on 127.0.0.1 -> the real
``fieldtui-agent`` CLI against a real agent home (and a real serving agent where the live model matters)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from fieldtui.protocol import DeviceRecord, DeviceStatus, Job, LogPage, ModelList, PushResult
from tests import storemodels as sm
from tests.console_cli import fail_line, ok_json, run
from tests.ssh_server import SSHTestServer


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "console"
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def device_home(agent_home: Path) -> Path:
    (agent_home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    return agent_home


@pytest.fixture
def ssh_server(tmp_path: Path, device_home: Path) -> SSHTestServer:
    shims = tmp_path / "shims"  # only for `restart`: never let a test touch the machine's systemd
    shims.mkdir()
    server = SSHTestServer(tmp_path, device_home, path_prepend=shims).start()
    yield server
    server.stop()


@pytest.fixture
def ssh_dir(tmp_path: Path, ssh_server: SSHTestServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """~/.ssh for the console: ``Host dock-1`` -> the test server; its key not yet in known_hosts."""
    folder = ssh_server.write_client_dir(tmp_path / "dot-ssh", "dock-1", known=False)
    monkeypatch.setenv("FIELDTUI_SSH_DIR", str(folder))
    return folder


def live_version(agent) -> str | None:
    with agent.client() as http:
        return http.get("/v1/status").json()["model"]["version"]


def test_pair_status_push_rollback_logs_over_ssh(
    capsys, console, ssh_dir, ssh_server, start_agent, device_home, tmp_path
):
    agent = start_agent(device_home)

    line = fail_line(capsys, "pair", "dock-1")
    assert "not a known SSH host" in line and ssh_server.fingerprint in line and "--accept-new" in line
    assert not (ssh_dir / "known_hosts").exists() and not (console / "devices.json").exists()

    record = DeviceRecord.model_validate(ok_json(capsys, "pair", "dock-1", "--accept-new", "--json"))
    assert record.api_url == agent.url and record.ssh is not None and record.ssh.host == "dock-1"
    assert f"[127.0.0.1]:{ssh_server.port}" in (ssh_dir / "known_hosts").read_text()
    saved = json.loads((console / "devices.json").read_text())["devices"][0]
    assert saved["token"] == agent.token
    assert stat.S_IMODE((console / "devices.json").stat().st_mode) == 0o600
    assert "token" not in json.dumps(record.model_dump())  # --json never prints it
    # Remembered: no --accept-new needed any more.
    assert ok_json(capsys, "pair", "dock-1", "--json")["id"] == record.id

    ds = DeviceStatus.model_validate(ok_json(capsys, "status", "dock-1", "--ssh", "--json"))
    assert ds.device.id == record.id and ds.health.status in ("ok", "degraded")

    v1 = sm.detector(tmp_path / "v1.onnx", seed=1)
    v2 = sm.detector(tmp_path / "v2.onnx", seed=2)
    code, out, err = run(
        capsys, "push", "dock-1", str(v1), "--version", "v1", "--activate", "--ssh", "--json"
    )
    assert code == 0, err
    pushed = PushResult.model_validate_json(out)
    assert pushed.uploaded and pushed.version.manifest.sha256 == sm.sha256(v1)
    assert pushed.activation is not None and pushed.activation.state == "succeeded"
    assert "uploading" in err  # progress on stderr
    assert live_version(agent) == "v1"  # the serving agent swapped its live model
    assert not list((device_home / "models" / ".staging").glob("ssh-*"))  # the upload was cleaned up

    ok_json(capsys, "push", "dock-1", str(v2), "--version", "v2", "--activate", "--ssh", "--json")
    assert live_version(agent) == "v2"
    job = Job.model_validate(ok_json(capsys, "rollback", "dock-1", "--ssh", "--json"))
    assert job.state == "succeeded" and job.result["version"] == "v1"
    assert live_version(agent) == "v1"

    page = LogPage.model_validate(ok_json(capsys, "logs", "dock-1", "--ssh", "--lines", "500", "--json"))
    assert page.lines and any("v2" in line.message for line in page.lines)
    assert agent.token not in json.dumps(page.model_dump())

    # delete over SSH (`fieldtui-agent models remove`): v1 serves, v2 goes; the serving one and a name that
    # would be an option of the agent's command line are refused in one line, nothing removed
    assert "v1 is the model serving now" in fail_line(capsys, "delete", "dock-1", "v1", "--ssh")
    assert "not a version name" in fail_line(capsys, "delete", "dock-1", "--ssh", "--", "--home=/tmp")
    left = ModelList.model_validate(ok_json(capsys, "delete", "dock-1", "v2", "--ssh", "--json"))
    assert [v.version for v in left.versions] == ["v1"] and live_version(agent) == "v1"


def test_http_down_falls_back_to_ssh_with_the_reason(capsys, console, ssh_dir, start_agent, device_home):
    agent = start_agent(device_home)
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    agent.stop()  # the API port is closed now; SSH still answers

    code, out, err = run(capsys, "status", "dock-1", "--json")
    assert code == 0, err
    assert "connection refused" in err and "falling back to SSH (dock-1)" in err
    ds = DeviceStatus.model_validate_json(out)
    assert ds.status.state == "stopped" and "agent not running" in ds.health.reasons[0]


def test_tls_pin_mismatch_falls_back_to_ssh_and_sends_no_token(
    capsys, console, ssh_dir, start_agent, device_home
):
    from fieldtui.config import ConsoleConfig

    start_agent(device_home, "--tls")
    record = DeviceRecord.model_validate(ok_json(capsys, "pair", "dock-1", "--accept-new", "--json"))
    assert record.tls and record.tls_fingerprint and record.api_url.startswith("https://")
    ConsoleConfig().save_device(record.model_copy(update={"tls_fingerprint": "ab" * 32}))  # a spoofed device

    code, out, err = run(capsys, "status", "dock-1", "--json")
    assert code == 0, err
    assert "certificate fingerprint changed" in err and "falling back to SSH (dock-1)" in err
    assert DeviceStatus.model_validate_json(out).device.id == record.id


def test_changed_host_key_is_refused_with_a_warning(capsys, console, ssh_dir, ssh_server):
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    known = (ssh_dir / "known_hosts").read_text()
    ssh_server.replace_host_key()
    for args in (
        ("status", "dock-1", "--ssh"),
        ("pair", "dock-1", "--accept-new"),
    ):  # accept-new is no excuse
        line = fail_line(capsys, *args)
        assert "WARNING" in line and "CHANGED" in line and ssh_server.fingerprint in line
    assert (ssh_dir / "known_hosts").read_text() == known


def test_remote_command_failure_surfaces_its_stderr(capsys, console, ssh_dir, tmp_path, device_home):
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("these are my notes, not a model\n" * 10)
    line = fail_line(capsys, "push", "dock-1", str(bogus), "--version", "v9", "--ssh")
    assert line.startswith("fieldtui: remote `fieldtui-agent models add` failed (exit 2): ")
    assert "v9 is not an ONNX model: it is plain text" in line
    assert not (device_home / "models" / "v9").exists()
    assert not list((device_home / "models" / ".staging").glob("ssh-*"))


def test_push_cut_off_half_way_leaves_the_device_unchanged(
    capsys, console, ssh_dir, ssh_server, start_agent, device_home, tmp_path
):
    agent = start_agent(device_home)
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    ok_json(
        capsys,
        "push",
        "dock-1",
        str(sm.detector(tmp_path / "v1.onnx")),
        "--version",
        "v1",
        "--activate",
        "--ssh",
        "--json",
    )
    big = sm.slow_detector(tmp_path / "big.onnx")
    ssh_server.cut_upload_after = big.stat().st_size // 2

    line = fail_line(capsys, "push", "dock-1", str(big), "--version", "v2", "--activate", "--ssh")
    assert "SFTP upload" in line and "failed" in line
    with agent.client() as http:
        listing = ModelList.model_validate_json(http.get("/v1/models").content)
    assert [v.version for v in listing.versions] == ["v1"] and live_version(agent) == "v1"

    agent.stop()  # the agent's start-up reconcile empties the staging area
    ssh_server.cut_upload_after = None
    again = start_agent(device_home)
    assert live_version(again) == "v1"
    staging = device_home / "models" / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_restart_over_ssh_says_when_sudo_needs_a_password(capsys, console, ssh_dir, tmp_path):
    shims = tmp_path / "shims"  # a non-root SSH user whose sudo asks for a password
    (shims / "id").write_text("#!/bin/sh\necho 1000\n")
    (shims / "sudo").write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    for f in shims.iterdir():
        f.chmod(0o755)
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    line = fail_line(capsys, "restart", "dock-1", "--ssh")
    assert line == (
        "fieldtui: sudo on dock-1 needs a password: allow `systemctl restart fieldtui-agent` for tech "
        "in sudoers, or restart by hand"
    )


def test_doctor_and_models_over_ssh_match_the_protocol(console, ssh_dir, capsys):
    import asyncio

    from fieldtui.config import ConsoleConfig
    from fieldtui.link.fallback import SSHLink

    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")
    entry = ConsoleConfig().find("dock-1") or ConsoleConfig().load()[0]

    async def go():
        async with SSHLink(entry.device.ssh) as link:
            return await link.doctor(), await link.models()

    backends, listing = asyncio.run(go())
    assert any(b.key == "onnxruntime" and b.available for b in backends)
    code, out, err = run(capsys, "doctor", "dock-1", "--ssh", "--json")
    assert code == 0 and [b["key"] for b in json.loads(out)] == [b.key for b in backends]
    assert isinstance(listing, ModelList) and listing.versions == []
    with pytest.raises(httpx.ConnectError):  # nothing serves HTTP here: those answers came over SSH
        httpx.get(entry.device.api_url + "/v1/health", timeout=2)
