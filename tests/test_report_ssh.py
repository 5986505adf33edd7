# ruff: noqa: F811  (the fixtures imported from tests.real_ssh_fixtures are parameters here)
"""``fieldtui report`` for a device whose HTTP port cannot be reached but SSH can (a firewall that lets
only port 22 through): the report reads the agent's history over the real OpenSSH server, so a push,
an activation and a benchmark made during the visit are in it, with the camera's snapshot and the
per-minute series (``fieldtui-agent report --json``), and it says how the device was reached."""

from __future__ import annotations

import json
import socket

from fieldtui.config import ConsoleConfig
from fieldtui.protocol import DeviceRecord
from tests import storemodels as sm
from tests.console_cli import ok_json, run
from tests.real_ssh_fixtures import (  # noqa: F401  (fixtures)
    ALIAS,
    client_key,
    device,
    device_agent,
    device_user,
    laptop,
    real_server,
)


def test_a_device_reached_only_over_ssh_is_reported_from_its_history(
    capsys, laptop, device, real_server, device_agent, tmp_path
):
    config = "[models]\nprobation_s = 0\n\n[series]\nminute_s = 0.5\n"  # a point every 0.5 s
    device.write(".local/share/fieldtui-agent/config.toml", config, 0o600)
    agent = device_agent()
    real_server("openssh")
    record = DeviceRecord.model_validate(ok_json(capsys, "pair", ALIAS, "--json"))
    files = sm.make(tmp_path / "files", "v1")
    code, _, err = run(capsys, "push", ALIAS, str(files["v1"]), "--version", "v1", "--activate", "--ssh")
    assert code == 0, err
    code, _, err = run(capsys, "bench", ALIAS, "--ssh", "--iterations", "5", "--warmup", "1")
    assert code == 0, err
    with socket.socket() as s:  # the HTTP port now leads nowhere: only SSH reaches the device
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = ConsoleConfig()
    config.save_device(record.model_copy(update={"port": closed}))  # same id: replaces it, keeps the token

    out = tmp_path / "visit.html"
    code, said, err = run(capsys, "report", "--since", "1h", "-o", str(out), "--json")
    assert code == 0, err
    report = json.loads(said)
    [dev] = report["devices"]
    assert dev["reachable"] and dev["reached"].startswith(f"SSH ({ALIAS}); HTTP did not answer")
    assert dev["model"]["after"]["version"] == "v1"
    assert dev["model"]["after"]["sha256"] == sm.sha256(files["v1"])[:12]
    whats = [(a["what"], a["outcome"]) for a in dev["actions"]]
    assert ("push", "stored") in whats and ("activate", "good") in whats
    # what only HTTP used to give: benchmarks, the snapshot, forwarding and the series
    [bench] = dev["benchmarks"]["results"]
    assert bench["status"] == "ok" and bench["p50_ms"] > 0 and bench["change"] == "first run"
    assert dev["camera"]["snapshot"].startswith("data:image/jpeg;base64,/9j/")  # a JPEG's first bytes
    assert dev["forwarding"] is not None and dev["forwarding"]["enabled"] is False
    assert dev["series"]["minute_s"] == 0.5 and dev["series"]["points"], dev["series"]
    assert dev["limits"] == []
    html = out.read_text()
    assert "configured model -&gt; v1" in html and "Not in this report" not in html
    assert 'aria-label="Latency over the visit"' in html and "Benchmark latency, p50" in html
    assert agent.token not in html and agent.token not in said
