"""``fieldtui`` as a technician runs it: real subprocesses against real agents on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fieldtui.config import ConsoleConfig
from fieldtui.protocol import DeviceStatus, DiscoveryResult

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def console_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "console"
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(path))
    return path


def fieldtui(*args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fieldtui", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=timeout,
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fieldtui: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_the_commands(console_dir):
    result = fieldtui("--help")  # `fieldtui` alone opens the TUI
    assert result.returncode == 0
    assert "discover" in result.stdout and "status" in result.stdout and "demo" in result.stdout


def test_status_where_nothing_listens_is_one_clear_line(console_dir):
    port = _closed_port()
    line = _one_error_line(fieldtui("status", f"127.0.0.1:{port}"))
    assert line == (
        f"fieldtui: connection refused at http://127.0.0.1:{port}/v1/health: "
        "is the agent running? try `fieldtui pair 127.0.0.1` over SSH"
    )


def test_add_then_status_with_the_saved_token(agent_proc, console_dir):
    added = fieldtui(
        "add", agent_proc.url, "--token", "-", "--name", "bench-1", "--json", stdin=agent_proc.token + "\n"
    )
    assert added.returncode == 0, added.stderr
    assert agent_proc.token not in added.stdout
    saved = ConsoleConfig(console_dir).find("bench-1")
    assert saved is not None and saved.token == agent_proc.token and saved.device.id
    assert stat.S_IMODE((console_dir / "devices.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(console_dir.stat().st_mode) == 0o700

    as_json = fieldtui("status", "bench-1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    status = DeviceStatus.model_validate_json(as_json.stdout)
    assert status.device.id == saved.device.id and status.status.source is not None
    assert agent_proc.token not in as_json.stdout

    by_id = fieldtui("status", saved.device.id)
    assert by_id.returncode == 0, by_id.stderr
    text = by_id.stdout
    assert text.startswith(status.device.name) and "pipeline  " in text and "source    demo:" in text
    assert agent_proc.token not in text + by_id.stderr


def test_unpaired_agent_status_says_how_to_pair_and_a_wrong_token_saves_nothing(agent_proc, console_dir):
    line = _one_error_line(fieldtui("status", agent_proc.url))
    assert "no token is saved" in line and "fieldtui pair 127.0.0.1" in line

    wrong = f"tok-{uuid.uuid4().hex}"
    line = _one_error_line(fieldtui("add", agent_proc.url, "--token", wrong))
    assert "refused this token" in line and "nothing was saved" in line and wrong not in line
    assert not (console_dir / "devices.json").exists()


def test_discover_finds_the_agent_over_mdns_with_its_txt_fields(
    start_agent, agent_home, console_dir, tmp_path
):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    agent = start_agent(agent_home, "--mdns-interface", "127.0.0.1", "--name", name, mdns=True)
    device_id = (agent_home / "device_id").read_text().strip()
    sd_file = tmp_path / "targets.json"

    result = fieldtui("discover", "--json", "--timeout", "3", "--prometheus-sd", str(sd_file))
    assert result.returncode == 0, result.stderr
    found = DiscoveryResult.model_validate_json(result.stdout)
    [mine] = [d for d in found.devices if d.id == device_id]
    port = int(agent.url.rsplit(":", 1)[1])
    assert (mine.name, mine.port, mine.tls, mine.lost) == (name, port, False, False)
    assert mine.version and mine.backend == "onnxruntime" and mine.model
    assert "127.0.0.1" in mine.addresses and "mdns" in mine.origin

    groups = json.loads(sd_file.read_text())
    [group] = [g for g in groups if g["labels"]["device_id"] == device_id]
    assert group == {
        "targets": [f"{mine.host}:{port}"],
        "labels": {
            "device_id": device_id,
            "device_name": name,
            "model": mine.model,
            "backend": "onnxruntime",
        },
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".targets")] == []  # no temp left


def test_discover_on_an_address_this_machine_lacks(console_dir):
    line = _one_error_line(fieldtui("discover", "--interface", "203.0.113.9", "--timeout", "1"))
    assert "no local interface has address 203.0.113.9" in line and "127.0.0.1" in line


def test_demo_prints_live_lines_until_sigterm_then_stops_its_agent(console_dir, tmp_path, tiny_model):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "FIELDTUI_AGENT_MODEL": str(tiny_model),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fieldtui", "demo", "--faults"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]  # pytest-timeout guards a silent demo
        home = tmp_path / "cache" / "fieldtui" / "demo-agent"
        agent_pid = json.loads((home / "agent.json").read_text())["pid"]
        proc.send_signal(signal.SIGTERM)  # like Ctrl-C or a closed terminal: stop in order
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert all(" fps " in line and "p95" in line and "camera" in line for line in lines), lines
    assert "demo agent fieldtui-demo at http://127.0.0.1:" in err and "camera faults at blur@20" in err
    assert err.rstrip().endswith("demo agent stopped")
    assert "Traceback" not in err
    [saved] = ConsoleConfig(console_dir).load()
    assert saved.device.name == "fieldtui-demo" and saved.token == (home / "token").read_text().strip()
    assert not (home / "agent.json").exists()  # the agent stopped cleanly and removed its runtime file
    with pytest.raises(ProcessLookupError):
        os.kill(agent_pid, 0)


def test_the_console_never_imports_the_agent_or_vendor_sdks():
    code = (
        "import sys, fieldtui.cli.main, fieldtui.client, fieldtui.config, fieldtui.demo, fieldtui.discovery, "
        "fieldtui.sse; print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'agent', 'cv2', 'onnxruntime', 'numpy', 'fastapi', 'uvicorn'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_table_and_prometheus_targets_for_mixed_devices(capsys):
    from fieldtui.cli.main import print_devices, prometheus_sd
    from fieldtui.protocol import DeviceRecord

    result = DiscoveryResult(
        devices=[
            DeviceRecord(
                id="a" * 32,
                name="gate-3",
                host="fd00::7",
                tls=True,
                tls_fingerprint="b" * 64,
                model="v7",
                backend="hailo",
                origin=["manual", "saved", "mdns"],
            ),
            DeviceRecord(
                name="dock-1", host="192.0.2.4", port=9000, origin=["manual", "saved", "mdns"], lost=True
            ),
        ],
        hints=["a hint"],
    )
    print_devices(result)
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "ADDRESS", "ID", "MODEL", "BACKEND", "VERSION", "TLS", "STATE", "FROM"]
    assert rows[1] == [
        "gate-3",
        "[fd00::7]:8470",
        "a" * 12,
        "v7",
        "hailo",
        "-",
        "pinned",
        "online",
        "manual,saved,mdns",
    ]
    assert rows[2][0] == "dock-1" and rows[2][6:8] == ["no", "lost"]
    assert err == "a hint\n"
    assert prometheus_sd(result) == [
        {
            "targets": ["[fd00::7]:8470"],
            "labels": {
                "device_id": "a" * 32,
                "device_name": "gate-3",
                "model": "v7",
                "backend": "hailo",
                "__scheme__": "https",
            },
        },
        {
            "targets": ["192.0.2.4:9000"],
            "labels": {"device_id": "", "device_name": "dock-1", "model": "", "backend": ""},
        },
    ]
