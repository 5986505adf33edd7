"""`fieldtui-agent serve` as a process: config layers, clean shutdown on signals, jobs that survive a
restart (and a crash), and one clear line for every start-up mistake."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.core.config import ConfigError, load_config
from fieldtui.protocol import Job, JobList

REPO = Path(__file__).resolve().parent.parent


def wait_job(client, job_id: str, timeout: float = 30.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.model_validate(client.get(f"/v1/jobs/{job_id}").json())
        if job.state in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.state} after {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_shuts_down_cleanly(agent_proc, sig):
    with agent_proc.client() as client:
        assert client.get("/v1/status").json()["state"] in ("starting", "running")
        # an open SSE stream must not hold the shutdown up
        with client.stream("GET", "/v1/events") as events:
            agent_proc.proc.send_signal(sig)
            for _ in events.iter_lines():
                pass  # the agent ends the stream itself
    assert agent_proc.proc.wait(15) == 0
    home = agent_proc.home
    assert not (home / "agent.json").exists()
    assert not [p.name for p in home.iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    conn = sqlite3.connect(home / "state.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert not (home / "state.db-wal").exists() or (home / "state.db-wal").stat().st_size == 0
    err = agent_proc.stderr()
    assert "listening on http://127.0.0.1:" in err
    assert "fieldtui-agent stopped" in err
    assert "Traceback" not in err


def test_jobs_and_results_survive_a_restart_and_a_crash(start_agent, agent_home):
    first = start_agent(agent_home)
    with first.client() as client:
        restart = client.post("/v1/pipeline/restart")
        assert restart.status_code == 202
        switch = client.put("/v1/pipeline/source", json={"uri": "demo:?seed=4"})
        bad = client.put("/v1/pipeline/source", json={"uri": "rtsp://admin:hunter2@127.0.0.1:1/live"})
        done = {j.id: j for j in (wait_job(client, r.json()["id"]) for r in (restart, switch, bad))}
    assert [j.state for j in done.values()] == ["succeeded", "succeeded", "failed"]
    failed = done[bad.json()["id"]]
    assert "could not open rtsp://***@127.0.0.1:1/live" in failed.error
    assert failed.params == {"uri": "rtsp://***@127.0.0.1:1/live"}
    assert first.stop() == 0

    second = start_agent(agent_home)
    with second.client() as client:
        listed = JobList.model_validate(client.get("/v1/jobs").json()).jobs
        assert {j.id: j for j in listed} == done  # every field, results and errors included
        later = wait_job(client, client.post("/v1/pipeline/restart").json()["id"])
    # a crash: no shutdown at all, the WAL not checkpointed, the runtime file left behind
    second.proc.kill()
    second.proc.wait(10)
    assert (agent_home / "agent.json").exists()

    third = start_agent(agent_home)
    with third.client() as client:
        ids = {j["id"] for j in client.get("/v1/jobs").json()["jobs"]}
        assert ids == set(done) | {later.id}
        assert client.get(f"/v1/jobs/{later.id}").json()["state"] == "succeeded"
    assert "hunter2" not in (agent_home / "agent.log").read_text()
    assert "hunter2" not in "".join(a.stderr() for a in (first, second, third))


def _serve(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_AGENT_")}
    clean.update(env or {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--home",
            str(home),
            "--no-mdns",
            "--host",
            "127.0.0.1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    ("setup", "overrides", "env", "expected"),
    [
        ("port = 'eighty'\n", {}, {}, "port in .*config.toml must be a whole number, not 'eighty'"),
        (
            "colour = 'blue'\n",
            {},
            {},
            "unknown setting 'colour' in .*; known settings: backend, camera, cameras, host",
        ),
        ("name = [\n", {}, {}, "is not valid TOML"),
        ("", {}, {"FIELDTUI_AGENT_TLS": "maybe"}, r"\$FIELDTUI_AGENT_TLS='maybe' is not a boolean"),
        ("", {}, {"FIELDTUI_AGENT_PORT": "80a"}, r"\$FIELDTUI_AGENT_PORT='80a' is not a whole number"),
        ("", {"port": 70000}, {}, "port 70000 in --port is out of range"),
        ("", {"log_level": "chatty"}, {}, "log_level 'CHATTY' in --log-level is not one of"),
    ],
)
def test_config_mistakes_say_where_and_what(agent_home, setup, overrides, env, expected):
    if setup:
        (agent_home / "config.toml").write_text(setup)
    with pytest.raises(ConfigError, match=expected):
        load_config(home=agent_home, env=env, overrides=overrides)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "/nonexistent/agent.toml"], "config file /nonexistent/agent.toml does not exist"),
        (["--model", "/nonexistent/model.onnx"], "model file not found: /nonexistent/model.onnx"),
    ],
)
def test_start_up_mistakes_are_one_clear_line(agent_home, args, expected):
    out = _serve(agent_home, "--port", "0", *args)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("fieldtui-agent:")]
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (agent_home / "agent.json").exists()


def test_a_port_in_use_is_one_clear_line(agent_proc, tmp_path, tiny_model):
    port = agent_proc.url.rsplit(":", 1)[1]
    out = _serve(tmp_path / "other-home", "--port", port, "--model", str(tiny_model))
    assert out.returncode == 2
    assert f"fieldtui-agent: port {port} on 127.0.0.1 is already in use" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_layers_file_then_environment_then_flags(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text(
        'name = "from-file"\nport = 9001\nsource = "demo:?seed=1"\ntls = true\nmdns_interfaces = ["10.0.0.2"]\n'
        "[forwarding]\nurl = 'https://trio.example'\n"
    )
    env = {"FIELDTUI_AGENT_PORT": "9002", "FIELDTUI_AGENT_NAME": "from-env", "FIELDTUI_AGENT_MDNS": "off"}
    config = load_config(home=home, env=env, overrides={"name": "from-flag", "port": None})
    assert config.home == home.absolute()
    assert (config.name, config.port, config.source, config.tls, config.mdns) == (
        "from-flag",
        9002,
        "demo:?seed=1",
        True,
        False,
    )
    assert config.mdns_interfaces == ["10.0.0.2"]
    assert config.sections == {"forwarding": {"url": "https://trio.example"}}
    # the home itself comes from the flag, else the environment
    from_env = load_config(env={"FIELDTUI_AGENT_HOME": str(home)})
    assert from_env.home == home.absolute() and from_env.port == 9001
    with pytest.raises(ConfigError, match="mdns_interfaces in .* must be a list of IP address strings"):
        (home / "config.toml").write_text("mdns_interfaces = [1, 2]\n")
        load_config(home=home, env={})
