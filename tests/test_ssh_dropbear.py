# ruff: noqa: F811  (the fixtures imported from tests.real_ssh_fixtures are parameters here)
"""The SSH fallback against Dropbear (Debian's ``dropbear-bin``), the server of many Yocto and Buildroot
images: pairing, status and a push with activation, once with OpenSSH's ``sftp-server`` installed (what
Dropbear runs for SFTP) and once without it, where the push streams through ``cat``."""

from __future__ import annotations

import subprocess

import pytest

from fieldtui.protocol import DeviceRecord, DeviceStatus, PushResult
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
from tests.test_ssh_openssh import big_model, live_version, staging_left


@pytest.mark.parametrize(
    ("sftp", "way"), [(True, "SFTP"), (False, "`cat` over SSH (the device has no SFTP server)")]
)
def test_pair_status_push_over_dropbear(
    capsys, laptop, device, real_server, device_agent, tmp_path, sftp, way
):
    agent = device_agent() if sftp else None  # without: the push is stored, not activated
    server = real_server("dropbear", known=False, sftp=sftp)

    line = fail_line(capsys, "pair", ALIAS)  # Dropbear has an RSA key too: asyncssh's first choice
    shown = [fp for fp in server.fingerprints if fp in line]
    assert "not a known SSH host" in line and len(shown) == 1
    kind = server.fingerprints[shown[0]]
    assert f"its {kind} key fingerprint" in line and f"ssh_host_{kind}_key.pub" in line
    record = DeviceRecord.model_validate(ok_json(capsys, "pair", ALIAS, "--accept-new", "--json"))
    assert record.ssh is not None and (agent is None or record.api_url == agent.url)
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(laptop.dot_ssh / "known_hosts")], capture_output=True, text=True
    )
    assert listed.stdout.split()[1:3] == [shown[0], f"[127.0.0.1]:{server.port}"]

    ds = DeviceStatus.model_validate(ok_json(capsys, "status", ALIAS, "--ssh", "--json"))
    assert ds.device.id == record.id and ds.status.state == ("running" if agent else "stopped")

    v1 = big_model(tmp_path / "v1.onnx")
    activate = ("--activate",) if agent else ()
    code, out, err = run(capsys, "push", ALIAS, str(v1), "--version", "v1", *activate, "--ssh", "--json")
    assert code == 0, err
    assert f"uploaded by {way}; " in err
    pushed = PushResult.model_validate_json(out)
    assert pushed.version.manifest.sha256 == sm.sha256(v1) and staging_left(device) == []
    assert sm.sha256(device.agent_home / "models" / "v1" / "model.onnx") == sm.sha256(v1)
    if agent is not None:
        assert pushed.activation.state == "succeeded" and live_version(agent) == "v1"
