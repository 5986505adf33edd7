# ruff: noqa: F811  (the fixtures imported from tests.real_ssh_fixtures are parameters here)
"""The SSH fallback against Debian's real OpenSSH server (tests/real_sshd.py): the ``fieldtui`` CLI with
the technician's own ``~/.ssh/config`` alias and ``known_hosts`` -> asyncssh -> ``sshd`` on 127.0.0.1 ->
the device user's login shell -> the real ``fieldtui-agent`` from its default home, with a serving agent
of that user where the live model matters."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from fieldtui.protocol import BenchmarkRun, DeviceRecord, DeviceStatus, Job, LogPage, ModelList, PushResult
from tests import storemodels as sm
from tests.console_cli import fail_line, ok_json, run
from tests.real_ssh_fixtures import (  # noqa: F401  (fixtures)
    ALIAS,
    client_key,
    device,
    device_agent,
    device_user,
    laptop,
    real_server,
)
from tests.real_sshd import keygen


def live_version(agent) -> str | None:
    with agent.client() as http:
        return http.get("/v1/status").json()["model"]["version"]


def serving(agent) -> tuple[str | None, str | None]:
    """(version, sha256) of the model the agent serves: what a failed push must leave alone."""
    with agent.client() as http:
        model = http.get("/v1/status").json()["model"]
    return model["version"], model["sha256"]


def stored_versions(agent) -> list[str]:
    with agent.client() as http:
        return [v.version for v in ModelList.model_validate_json(http.get("/v1/models").content).versions]


def staging_left(device) -> list[str]:
    staging = device.agent_home / "models" / ".staging"
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def big_model(path: Path, seed: int = 0) -> Path:
    """A real detector over 1 MB: SFTP writes longer than OpenSSH's 261120-byte limit if unclamped."""
    from tests import modelgen as mg

    out = mg.yolov8_output([(40 + seed, 40, 24, 24, seed % 4, 0.9)], nc=4, anchors=336)
    meta = mg.ultralytics_metadata(sm.CLASSES, imgsz=sm.IMGSZ, version=f"seed{seed}")
    meta["notes"] = f"{seed}" * (1 << 20)  # kept in the file: the model runs as fast as a small one
    model = mg.save_model(path, [out], input_shape=(1, 3, sm.IMGSZ, sm.IMGSZ), metadata=meta)
    assert model.stat().st_size > 4 * 261120
    return model


def test_pair_status_push_rollback_logs_bench_over_openssh(
    capsys, laptop, device, real_server, device_agent, tmp_path
):
    agent = device_agent()
    server = real_server("openssh", known=False)

    line = fail_line(capsys, "pair", ALIAS)  # a host not in known_hosts: refused, with what to compare
    assert "not a known SSH host" in line and server.fingerprint in line and "--accept-new" in line
    assert not (laptop.dot_ssh / "known_hosts").exists() and not laptop.devices_json.exists()

    record = DeviceRecord.model_validate(ok_json(capsys, "pair", ALIAS, "--accept-new", "--json"))
    assert record.api_url == agent.url and record.ssh is not None and not record.ssh.sudo
    assert server.known_hosts_line() == (laptop.dot_ssh / "known_hosts").read_text()
    assert json.loads(laptop.devices_json.read_text())["devices"][0]["token"] == agent.token

    ds = DeviceStatus.model_validate(ok_json(capsys, "status", ALIAS, "--ssh", "--json"))
    assert ds.device.id == record.id and ds.status.state == "running"

    v1, v2 = big_model(tmp_path / "v1.onnx"), big_model(tmp_path / "v2.onnx", seed=1)
    code, out, err = run(capsys, "push", ALIAS, str(v1), "--version", "v1", "--activate", "--ssh", "--json")
    assert code == 0, err
    pushed = PushResult.model_validate_json(out)
    assert pushed.uploaded and pushed.version.manifest.sha256 == sm.sha256(v1)
    assert pushed.activation is not None and pushed.activation.state == "succeeded"
    assert "uploaded by SFTP; " in err
    assert live_version(agent) == "v1" and staging_left(device) == []

    ok_json(capsys, "push", ALIAS, str(v2), "--version", "v2", "--activate", "--ssh", "--json")
    assert live_version(agent) == "v2"
    job = Job.model_validate(ok_json(capsys, "rollback", ALIAS, "--ssh", "--json"))
    assert job.state == "succeeded" and job.result["version"] == "v1" and live_version(agent) == "v1"

    page = LogPage.model_validate(ok_json(capsys, "logs", ALIAS, "--ssh", "--lines", "500", "--json"))
    assert any("v2" in line.message for line in page.lines)
    assert agent.token not in json.dumps(page.model_dump())

    flags = ("--ssh", "--json", "--iterations", "3", "--warmup", "1", "--threads", "1")
    bench = BenchmarkRun.model_validate(ok_json(capsys, "bench", ALIAS, *flags))
    assert bench.model == "v1" and bench.model_sha256 == sm.sha256(v1)
    assert [r.status for r in bench.results] == ["ok"] and bench.results[0].iterations == 3
    assert staging_left(device) == []


def test_changed_host_key_is_refused(capsys, laptop, device, real_server):
    server = real_server("openssh")
    ok_json(capsys, "pair", ALIAS, "--json")
    known = (laptop.dot_ssh / "known_hosts").read_text()
    server.replace_host_key()
    for args in (("status", ALIAS, "--ssh"), ("pair", ALIAS, "--accept-new")):  # accept-new is no excuse
        line = fail_line(capsys, *args)
        assert (
            "WARNING" in line and "CHANGED" in line and server.fingerprint in line and "ssh-keygen -R" in line
        )
    assert (laptop.dot_ssh / "known_hosts").read_text() == known


def test_a_key_the_device_does_not_know_is_one_line(capsys, laptop, device, real_server):
    real_server("openssh")
    keygen(laptop.key.with_name("other"))
    config = laptop.dot_ssh / "config"
    config.write_text(config.read_text().replace(str(laptop.key), str(laptop.key.with_name("other"))))
    assert fail_line(capsys, "pair", ALIAS) == (
        f"fieldtui: SSH to {ALIAS} refused every key offered: add your public key to the device's "
        "~/.ssh/authorized_keys, load it into ssh-agent, or name it with IdentityFile in ~/.ssh/config"
    )
    assert not laptop.devices_json.exists()


def test_an_agent_missing_from_path_is_one_line(capsys, laptop, device, real_server):
    real_server("openssh", agent_on_path=False)
    assert fail_line(capsys, "pair", ALIAS) == (
        "fieldtui: remote `fieldtui-agent token` failed (exit 127): fieldtui-agent not found on fielddev: "
        "is it installed and on the PATH of the SSH user?"
    )


BANNER = 'echo "Welcome to fielddev (Yocto 4.0, kirkstone)"\n'


def test_a_login_banner_is_one_line_and_changes_nothing(
    capsys, laptop, device, real_server, device_agent, tmp_path
):
    agent = device_agent()
    real_server("openssh")
    ok_json(capsys, "pair", ALIAS, "--json")
    before = serving(agent)
    device.write(".bashrc", BANNER + (device.home / ".bashrc").read_text())  # above Debian's guard
    expected = (
        "fieldtui: the login shell on fielddev prints 'Welcome to fielddev (Yocto 4.0, kirkstone)' before "
        "every command's output: make it print only in interactive shells (in ~/.bashrc, below "
        "`case $- in *i*) ;; *) return;; esac`) and try again"
    )
    v2 = big_model(tmp_path / "v2.onnx")
    assert fail_line(capsys, "push", ALIAS, str(v2), "--version", "v2", "--activate", "--ssh") == expected
    assert fail_line(capsys, "rollback", ALIAS, "--ssh") == expected
    assert fail_line(capsys, "status", ALIAS, "--ssh") == expected
    assert staging_left(device) == [] and stored_versions(agent) == [] and serving(agent) == before


def test_push_without_sftp_streams_through_cat(capsys, laptop, device, real_server, tmp_path):
    """OpenSSH with no ``Subsystem sftp`` line refuses asyncssh's SFTP request: the bytes go through
    ``cat`` on an exec channel, the sha256 is checked on the device, then ``models add`` (which refuses
    this file: the streamed copy is removed all the same). Dropbear without sftp-server, where the SFTP
    channel opens and ends at once, pushes and activates in tests/test_ssh_dropbear.py."""
    real_server("openssh", sftp=False)
    ok_json(capsys, "pair", ALIAS, "--json")
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("these are my notes, not a model\n" * 40000)
    code, out, err = run(capsys, "push", ALIAS, str(bogus), "--version", "v9", "--ssh")
    assert code == 2 and "uploaded by `cat` over SSH (the device has no SFTP server); " in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("fieldtui: remote `fieldtui-agent models add` failed (exit 2): ")
    assert "v9 is not an ONNX model" in line
    assert staging_left(device) == [] and not (device.agent_home / "models" / "v9").exists()


def test_a_connection_dropped_mid_upload_changes_nothing(
    capsys, laptop, device, real_server, device_agent, tmp_path
):
    """sshd's session processes are killed once the device holds 1 MB of a 48 MB upload: the server
    end of the link is gone mid-write. The console says so in one line and removes the partial file over
    a new connection; the device keeps serving v1."""
    agent = device_agent()
    server = real_server("openssh")
    ok_json(capsys, "pair", ALIAS, "--json")
    before = serving(agent)
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\x08\x08" + bytes(48 << 20))
    staging = device.agent_home / "models" / ".staging"
    killed: list[int] = []

    def cut_when_half_way() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if any(p.stat().st_size > 1 << 20 for p in staging.glob("ssh-*") if p.exists()):
                killed.append(server.drop_connections())
            time.sleep(0.002)

    watcher = threading.Thread(target=cut_when_half_way)
    watcher.start()
    try:
        line = fail_line(capsys, "push", ALIAS, str(big), "--version", "v2", "--activate", "--ssh")
    finally:
        killed.append(0)
        watcher.join()
    assert killed[0] > 0, "the upload ended before the watcher saw it"
    assert line.startswith("fieldtui: SFTP upload to fielddev:") and "the SSH connection dropped" in line
    assert staging_left(device) == [] and stored_versions(agent) == [] and serving(agent) == before


@pytest.fixture
def small_disk(device):
    """The device's agent home on a 6 MB tmpfs (the device's disk, nearly full once it holds a model)."""
    import subprocess

    home = device.agent_home
    config = (home / "config.toml").read_text()
    options = f"size=6m,mode=0700,uid={device.uid},gid={device.gid}"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "fieldtui-test", str(home)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    device.write(".local/share/fieldtui-agent/config.toml", config, 0o600)
    yield home
    subprocess.run(["umount", "--lazy", str(home)], check=True)


def test_a_full_disk_is_one_line_and_changes_nothing(
    capsys, laptop, device, small_disk, real_server, device_agent, tmp_path
):
    agent = device_agent()  # started after the mount: the agent and the sessions see the same disk
    real_server("openssh")
    ok_json(capsys, "pair", ALIAS, "--json")
    before = serving(agent)
    # Fits the free space once, not twice (staging + store): the agent's own line, nothing kept.
    big = sm.slow_detector(tmp_path / "v2.onnx", size=1024, depth=2)
    line = fail_line(capsys, "push", ALIAS, str(big), "--version", "v2", "--activate", "--ssh")
    assert line.startswith("fieldtui: remote `fieldtui-agent models add` failed (exit 2): ")
    # the agent's full-disk line (agent/core/diskspace.py): what happened, that nothing changed, what to delete
    assert "fieldtui-agent: the device's disk is full (" in line and "nothing was changed; " in line
    assert "delete model versions no longer needed" in line and line.endswith("then try again")
    assert staging_left(device) == [] and stored_versions(agent) == [] and serving(agent) == before
    # Larger than the free space: refused before a byte is sent, with the figures.
    huge = tmp_path / "v3.onnx"
    huge.write_bytes(b"\x08\x08" + bytes(8 << 20))
    line = fail_line(capsys, "push", ALIAS, str(huge), "--version", "v3", "--activate", "--ssh")
    assert line.startswith("fieldtui: the device has ") and "MB free in " in line
    assert "the model needs 8.4 MB" in line and line.endswith("and push again; nothing was sent")
    assert staging_left(device) == [] and stored_versions(agent) == [] and serving(agent) == before


async def test_aes_gcm_is_preferred_unless_the_technicians_config_names_a_cipher(laptop, device, real_server):
    """fieldtui's defaults (fieldtui/ssh_defaults.conf) are read after ~/.ssh/config: AES-GCM first
    against a real OpenSSH, whose own first choice is ChaCha20; a Ciphers line of the technician's wins."""
    from fieldtui.protocol import SSHEndpoint
    from fieldtui.ssh import SSHSession

    real_server("openssh")
    async with await SSHSession.connect(SSHEndpoint(host=ALIAS)) as ssh:
        assert ssh.conn.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
    config = laptop.dot_ssh / "config"
    config.write_text(config.read_text() + "  Ciphers chacha20-poly1305@openssh.com\n")
    async with await SSHSession.connect(SSHEndpoint(host=ALIAS)) as ssh:
        assert ssh.conn.get_extra_info("send_cipher") == "chacha20-poly1305@openssh.com"
