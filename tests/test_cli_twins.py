"""The command-line twins of the console's screens against one real agent on 127.0.0.1: ``fieldtui trio``
(endpoint, write-only key, stream URL, rules), ``source``, ``delete`` and ``logs --follow``; every hostile
input is one line, exit 2, and changes nothing; the Trio key never appears in any output or agent log."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldtui.config import ConsoleConfig
from fieldtui.protocol import DeviceRecord, ForwardingState, ModelList, PipelineStatus
from tests import storemodels as sm
from tests.console_cli import fail_line, ok_json, run

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-twin-9f8e7d6c5b4a39281706"
CLASS_LIST = "circle, square, triangle, cross"


@pytest.fixture(scope="module")
def console(module_agent, tmp_path_factory) -> Iterator[Path]:
    """The console's config with ``module_agent`` saved (its token too) as ``dock``."""
    path = tmp_path_factory.mktemp("console")
    port = int(module_agent.url.rsplit(":", 1)[1])
    ConsoleConfig(path).save_device(
        DeviceRecord(name="dock", host="127.0.0.1", port=port), module_agent.token
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIELDTUI_CONFIG_DIR", str(path))
        yield path


def _forwarding(agent) -> dict:
    with agent.client() as c:
        return c.get("/v1/forwarding").json()


def _settings(agent) -> dict:
    """The settings as the agent keeps them (counters aside), to tell that nothing changed."""
    doc = _forwarding(agent)
    doc.pop("stats")
    return doc


def _agent_logs(agent) -> str:
    with agent.client() as c:
        return c.get("/v1/logs", params={"limit": 1000}).text


# --- fieldtui trio ------------------------------------------------------------------------------------


def test_trio_sets_endpoint_key_stream_and_rules_and_never_shows_the_key(
    module_agent, console, capsys, tmp_path
):
    key_file = tmp_path / "trio.key"
    key_file.write_text(KEY + "\n")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"classes": ["circle", "cross"], "min_confidence": 0.7, "cooldown_s": 12}))
    doc = ok_json(
        capsys,
        "trio", "dock",
        "--endpoint", "https://trio.example.test/api",
        "--key-file", str(key_file),
        "--stream-url", "rtsp://cam.example.test/live",
        "--rules", str(rules),
        "--json",
    )  # fmt: skip
    state = ForwardingState.model_validate(doc)
    assert state.base_url == "https://trio.example.test/api"
    assert state.stream_url == "rtsp://cam.example.test/live"
    assert state.rules.classes == ["circle", "cross"] and state.rules.cooldown_s == 12
    assert state.api_key == "set (key file)"  # not even the few characters the agent's mask shows
    assert (module_agent.home / "trio_api_key").read_text().strip() == KEY

    code, out, err = run(capsys, "trio", "dock")  # no flag: the settings as they are
    assert code == 0, err
    lines = out.splitlines()
    assert "API key    set (key file)" in lines and lines[1] == "endpoint   https://trio.example.test/api"
    assert "classes circle, cross; confidence ≥ 0.70; cooldown 12 s" in out
    for text in (json.dumps(doc), out, err, _agent_logs(module_agent)):
        assert KEY not in text and KEY[:8] not in text and KEY[-4:] not in text

    # Issue 17's rule, kept: the key is bound to its endpoint; a new one without --key-file drops it.
    code, out, err = run(capsys, "trio", "dock", "--endpoint", "https://other.example.test/api")
    assert code == 0, err
    assert "API key    not set" in out and "the Trio key was dropped" in err and "--key-file" in err
    assert not (module_agent.home / "trio_api_key").exists()


def test_trio_refuses_hostile_input_in_one_line_and_changes_nothing(module_agent, console, capsys, tmp_path):
    key_file = tmp_path / "trio.key"
    key_file.write_text(KEY + "\n")
    ok_json(
        capsys,
        "trio",
        "dock",
        "--endpoint",
        "https://trio.example.test/api",
        "--key-file",
        str(key_file),
        "--json",
    )
    before = _settings(module_agent)
    bad_classes = tmp_path / "bad-classes.json"
    bad_classes.write_text(json.dumps({"classes": ["cir©le", "<script>"]}))
    line = fail_line(capsys, "trio", "dock", "--rules", str(bad_classes))
    assert "rules.classes" in line and "'cir©le', '<script>' are not classes" in line
    assert f"its classes are {CLASS_LIST}" in line and "nothing was changed" in line

    bad_redact = tmp_path / "bad-redact.json"
    bad_redact.write_text(json.dumps({"redact_classes": ["face"]}))
    assert (
        f"rules.redact_classes: 'face' is not a class of the serving model; its classes are {CLASS_LIST}"
        in (fail_line(capsys, "trio", "dock", "--rules", str(bad_redact)))
    )
    misspelt = tmp_path / "misspelt.json"
    misspelt.write_text(json.dumps({"clases": ["circle"]}))
    assert "unknown rule 'clases'" in fail_line(capsys, "trio", "dock", "--rules", str(misspelt))
    broken = tmp_path / "broken.json"
    broken.write_text("{classes: circle")
    assert "not valid JSON" in fail_line(capsys, "trio", "dock", "--rules", str(broken))
    # a token holder pointing the key at a host of theirs (issue 17): refused, the key stays bound
    assert "must be https://" in fail_line(
        capsys, "trio", "dock", "--endpoint", "http://attacker.example:8479"
    )
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    assert "is empty" in fail_line(capsys, "trio", "dock", "--key-file", str(empty))
    assert "no such file" in fail_line(capsys, "trio", "dock", "--key-file", str(tmp_path / "nope.key"))
    odd = tmp_path / "odd.key"
    odd.write_text("Åï-not-ascii\n")
    line = fail_line(capsys, "trio", "dock", "--key-file", str(odd))
    assert "api_key must be the key as Trio issued it" in line and "Åï" not in line
    assert _settings(module_agent) == before
    assert (module_agent.home / "trio_api_key").read_text().strip() == KEY

    with module_agent.client() as c:  # the agent's own answer to a raw PUT: 422, one clear line
        answer = c.put("/v1/forwarding", json={"rules": {"classes": ["cir©le", "<script>"]}})
    assert answer.status_code == 422 and CLASS_LIST in answer.json()["detail"]
    assert _settings(module_agent) == before
    assert KEY not in _agent_logs(module_agent)


# --- fieldtui source ----------------------------------------------------------------------------------


def test_source_switches_the_camera_and_a_refused_uri_changes_nothing(module_agent, console, capsys):
    status = PipelineStatus.model_validate(
        ok_json(capsys, "source", "dock", "demo:?fps=10&size=160x120&seed=3", "--json")
    )
    assert status.source is not None and status.source.uri == "demo:?fps=10&size=160x120&seed=3"
    for hostile in ("~nosuchuser/x", "ftp://cam/x", "demo:?faults=melt@3"):
        line = fail_line(capsys, "source", "dock", hostile)
        assert line.startswith("fieldtui: ") and "Traceback" not in line
    with module_agent.client() as c:
        assert c.get("/v1/status").json()["source"]["uri"] == "demo:?fps=10&size=160x120&seed=3"
    code, out, err = run(capsys, "source", "dock", "demo:")
    assert code == 0 and out.startswith("source    demo: (demo)"), err


# --- fieldtui activate and delete (activate and forget existed already) -----------------------------


def test_activate_then_delete_and_what_they_refuse(module_agent, console, capsys, tmp_path):
    files = sm.make(tmp_path / "files", "v1", "v2")
    for version in ("v1", "v2"):
        code, _, err = run(capsys, "push", "dock", str(files[version]), "--version", version, "--quiet")
        assert code == 0, err
    code, out, err = run(capsys, "activate", "dock", "v1")
    assert code == 0 and out.startswith("v1 serves now"), (out, err)
    assert "v1 is the model serving now" in fail_line(capsys, "delete", "dock", "v1")
    for hostile, why in (
        ("../etc", "version"),
        ("v9", "no model version 'v9'"),
        ("--home=/tmp", "not a version name"),  # would be an option of the agent's CLI over SSH
    ):
        assert why in fail_line(capsys, "delete", "dock", "--", hostile)
    assert "not a version name" in fail_line(capsys, "activate", "dock", "--", "--home=/tmp")
    listing = ModelList.model_validate(ok_json(capsys, "delete", "dock", "v2", "--json"))
    assert [v.version for v in listing.versions] == ["v1"] and listing.serving.version == "v1"
    assert "no model version 'v2'" in fail_line(capsys, "delete", "dock", "v2")


# --- fieldtui logs --follow ---------------------------------------------------------------------------


def test_logs_follow_prints_new_lines_and_ends_cleanly_on_ctrl_c(module_agent, console):
    env = {**os.environ, "PYTHONPATH": str(REPO), "FIELDTUI_CONFIG_DIR": str(console)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fieldtui", "logs", "dock", "--follow", "--lines", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        seen: list[str] = []

        def read_until(text: str, wait_s: float) -> bool:
            """Read lines for up to ``wait_s``; True once a line read now holds ``text``."""
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.2)
                if ready:
                    line = proc.stdout.readline()
                    if not line:
                        return False
                    seen.append(line)
                    if text in line:
                        return True
            return False

        assert read_until("", 30), seen  # the recent page
        # a line the agent logs after the follower started arrives over the event stream
        found, deadline = False, time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            with module_agent.client() as c:
                c.put(
                    "/v1/forwarding", json={"condition": f"anything odd at {time.time()}?"}
                ).raise_for_status()
            found = read_until("forwarding disabled: mode", 2)
        assert found, seen
        proc.send_signal(signal.SIGINT)
        code = proc.wait(15)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_logs_follow_over_ssh_says_what_to_run_instead(console, capsys):
    line = fail_line(capsys, "logs", "dock", "--follow", "--ssh")
    assert "journalctl -fu fieldtui-agent" in line
