"""``fieldtui-agent models ...`` as the SSH path runs it (real subprocesses): with no agent serving it
works on the store under its lock; with an agent serving from the same home it goes through that agent's
API on localhost, so the running agent's store is never changed behind its back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fieldtui.protocol import Job, ModelList, ModelVersion
from tests import storemodels as sm
from tests.storeclient import listing

REPO = Path(__file__).resolve().parent.parent


def agent_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_AGENT_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "agent", "models", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("fieldtui-agent: ") and "Traceback" not in result.stderr
    return lines[-1]


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return sm.make(tmp_path / "files", "v1", "v2")


def test_with_the_agent_stopped_the_cli_works_on_the_store_and_the_next_start_loads_it(
    files, agent_home, start_agent
):
    bad = error_line(agent_cli(agent_home, "add", str(files["v1"]), "--version", "v1", "--sha256", "ab" * 32))
    assert f"expected {'ab' * 32}, got {sm.sha256(files['v1'])}" in bad
    added = agent_cli(agent_home, "add", str(files["v1"]), "--version", "v1", "--json")
    assert added.returncode == 0, added.stderr
    assert ModelVersion.model_validate_json(added.stdout).manifest.sha256 == sm.sha256(files["v1"])
    done = agent_cli(agent_home, "activate", "v1")
    assert (
        done.returncode == 0 and done.stdout.strip() == "v1 is current; the agent loads it at its next start"
    )
    assert "current" in error_line(agent_cli(agent_home, "remove", "v1"))
    assert "no model version 'v9' on this device" in error_line(agent_cli(agent_home, "activate", "v9"))
    assert "reserved word" in error_line(agent_cli(agent_home, "activate", "current"))

    agent = start_agent(agent_home, source="demo:?fps=15&size=160x120")
    with agent.client() as c:
        models = listing(c)
    assert models.serving.version == "v1"
    row = next(h for h in models.history if h.action == "activate")
    assert (row.outcome, row.reason) == ("good", "loaded and warmed up at start")


def test_with_the_agent_serving_the_cli_goes_through_its_api(files, agent_home, start_agent):
    (agent_home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    agent = start_agent(agent_home, source="demo:?fps=15&size=160x120")
    for version in ("v1", "v2"):
        assert agent_cli(agent_home, "add", str(files[version]), "--version", version).returncode == 0
    job = Job.model_validate_json(agent_cli(agent_home, "activate", "v1", "--json").stdout)
    assert job.state == "succeeded" and job.result["outcome"] == "good"
    with agent.client() as c:  # a real job of the serving agent, with the live health check
        assert c.get(f"/v1/jobs/{job.id}").json()["kind"] == "model.activate"
        assert c.get("/v1/status").json()["model"]["version"] == "v1"
    served = agent_cli(agent_home, "activate", "v2")
    assert served.returncode == 0 and served.stdout.strip() == "now serving v2"
    back = agent_cli(agent_home, "rollback")
    assert back.returncode == 0 and back.stdout.strip() == "rolled back to v1"
    assert "serving now" in error_line(agent_cli(agent_home, "remove", "v1"))
    removed = agent_cli(agent_home, "remove", "v2", "--json")
    assert [v["version"] for v in json.loads(removed.stdout)["versions"]] == ["v1"]
    listed = ModelList.model_validate_json(agent_cli(agent_home, "list", "--json").stdout)
    assert listed.serving.version == "v1" and [h.action for h in listed.history][:3] == [
        "remove",
        "rollback",
        "activate",
    ]
    text = agent_cli(agent_home, "list").stdout.splitlines()
    assert text[0] == "serving   v1" and any(line.startswith("v1  ") and " serving " in line for line in text)
