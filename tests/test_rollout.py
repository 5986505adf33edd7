"""Staged rollouts from the console (``fieldtui rollout``) on a site of six real agents.

Six real agents on 127.0.0.1 (port 0 each, in this process), shared by the module: the demo source
at a low frame rate, a two-second probation window. The console runs in this process (``main()``), and
once as a subprocess killed mid-wave, to resume it. Model files come from tests/storemodels.py (``weak``
keeps its boxes but at a confidence that collapses against the others': it fails probation).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fieldtui.config import ConsoleConfig
from fieldtui.protocol import DeviceRecord, ModelList
from fieldtui.rollout import RolloutStore, max_failures, wave_sizes
from fieldtui.rollout.plan import RolloutError
from tests import storemodels as sm
from tests.conftest import REPO, START_TIMEOUT_S, STOP_TIMEOUT_S, RunningAgent, _clean_env
from tests.console_cli import fail_line, run

SITE = 6
PROBATION_S = 1
SOURCE = "demo:?fps=8&size=160x120"


def _start_agent(home: Path, name: str, model: Path) -> tuple[RunningAgent, Callable[[], None]]:
    """A real agent (AgentService under uvicorn on 127.0.0.1, port 0) in this process, as
    tests/conftest.py's ``inproc_agent`` starts one: no start-up imports per agent, so six cost one."""
    from agent.core.config import load_config
    from agent.server.app import bind_socket, make_server
    from agent.server.service import AgentService

    overrides = {
        "host": "127.0.0.1",
        "port": 0,
        "source": SOURCE,
        "mdns": False,
        "model": str(model),
        "name": name,
    }
    service = AgentService.create(load_config(home=home, env={}, overrides=overrides))
    service.start()
    sock = bind_socket("127.0.0.1", 0)
    service.api_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = make_server(service, sock)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{name}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, f"agent {name} did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        service.close()

    return RunningAgent(url=service.api_url, token=service.token, home=home, service=service), stop


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model) -> Iterator[list[RunningAgent]]:
    tmp = tmp_path_factory.mktemp("site")
    stops: list[Callable[[], None]] = []
    agents = []
    try:
        for i in range(SITE):
            home = tmp / f"cam-{i}"
            home.mkdir(mode=0o700)
            (home / "config.toml").write_text(
                f"[models]\nprobation_s = {PROBATION_S}\nprobation_min_frames = 5\n"
            )
            agent, stop = _start_agent(home, f"cam-{i}", tiny_model)
            agents.append(agent)
            stops.append(stop)
        yield agents
    finally:  # all at once: each waits for its uvicorn to finish its connections
        threads = [threading.Thread(target=stop) for stop in stops]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return sm.make(tmp_path_factory.mktemp("rollout-models"), "v1", "v2", "v3", "weak")


def _record(agent: RunningAgent, name: str) -> DeviceRecord:
    port = int(agent.url.rsplit(":", 1)[1])
    device_id = (agent.home / "device_id").read_text().strip()
    return DeviceRecord(id=device_id, name=name, host="127.0.0.1", port=port, origin=["manual"])


@pytest.fixture
def console(tmp_path, monkeypatch, site) -> ConsoleConfig:
    """A console whose saved devices are the six agents (cam-0 ... cam-5), its files in a temp dir."""
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "console"))
    monkeypatch.delenv("FIELDTUI_DATA_DIR", raising=False)
    config = ConsoleConfig()
    for i, agent in enumerate(site):
        config.save_device(_record(agent, f"cam-{i}"), agent.token)
    return config


def listing(agent: RunningAgent) -> ModelList:
    with agent.client() as c:
        r = c.get("/v1/models", params={"history": 500})
        r.raise_for_status()
        return ModelList.model_validate(r.json())


def serving(agent: RunningAgent) -> str | None:
    m = listing(agent)
    return m.serving.version if m.serving else None


def uploads(agent: RunningAgent, version: str) -> int:
    """How many times the agent stored an upload of ``version`` (its own history)."""
    return sum(
        1
        for h in listing(agent).history
        if h.action == "upload" and h.version == version and h.outcome == "stored"
    )


def activation(agent: RunningAgent, version: str):
    return next(h for h in listing(agent).history if h.action == "activate" and h.version == version)


def rollout_files(console: ConsoleConfig) -> list[Path]:
    return sorted((console.dir / "rollouts").glob("*.json")) if (console.dir / "rollouts").is_dir() else []


# --- waves, criteria, hostile input (no device touched) ------------------------------------------


def test_waves_and_criteria_from_the_command_line():
    assert wave_sizes(6, 1, "100%") == [1, 5]
    assert wave_sizes(6, 1, "25%,100%") == [1, 1, 4]
    assert wave_sizes(40, 2, "25%,50%,100%") == [2, 8, 10, 20]
    assert wave_sizes(10, 1, "exp") == [1, 2, 4, 3]
    assert wave_sizes(6, 0, "exp") == [1, 2, 3]
    assert wave_sizes(3, 3, "100%") == [3]
    assert max_failures("10%", 25) == 2 and max_failures("1", 25) == 1 and max_failures("0%", 6) == 0
    for waves, words in [
        ("25,100", "as a percent"),
        ("50%,25%,100%", "larger than the one before"),
        ("25%,50%", "must be 100%"),
        ("0%,100%", "out of range"),
        ("abc%", "not a percent"),
        ("nan%,100%", "out of range"),
    ]:
        with pytest.raises(RolloutError, match=words):
            wave_sizes(6, 1, waves)
    with pytest.raises(RolloutError, match="use 0 to 6"):
        wave_sizes(6, 7, "100%")
    for text in ("-1", "x", "150%", "1.5"):
        with pytest.raises(RolloutError):
            max_failures(text, 6)


def test_hostile_input_is_one_line_and_starts_nothing(console, models, capsys, tmp_path):
    good = str(models["v1"])
    cases = [
        (
            ("rollout", good, "--version", "v9", "--all", "--waves", "50"),
            "write a share of the devices as a percent",
        ),
        (("rollout", good, "--version", "v9", "--all", "--waves", "50%,120%"), "out of range"),
        (("rollout", good, "--version", "v9", "--all", "--max-failures", "lots"), "use a count like 1"),
        (("rollout", good, "--version", "v9", "--devices", "cam-0,nosuch"), "unknown device 'nosuch'"),
        (("rollout", good, "--version", "v9", "--tag", "basement"), "no saved device is tagged 'basement'"),
        (("rollout", good, "--version", "v9", "--tag", "bad tag!"), "is not allowed"),
        (("rollout", str(tmp_path / "gone.onnx"), "--version", "v9", "--all"), "model file not found"),
        (("rollout", good, "--version", "../x", "--all"), "is not allowed"),
        (("rollout", good, "--all"), "give MODEL and --version"),
        (("rollout", "--resume", "20990101-0000-abcd"), "no rollout '20990101-0000-abcd'"),
        (("rollout", "--resume", "../../etc/passwd"), "is not a rollout id"),
        (("tag", "nosuch", "a"), "no saved device matches 'nosuch'"),
        (("tag", "cam-0", "ok,not ok"), "is not allowed"),
    ]
    for args, words in cases:
        line = fail_line(capsys, *args)
        assert words in line, (args, line)
        assert line.startswith("fieldtui: ") and "\n" not in line
    assert rollout_files(console) == []  # nothing half-written
    # a rollout another console is running is refused, not raced
    from fieldtui.rollout import RolloutPlan, RolloutState

    keys = [e.key for e in console.load()][:2]
    plan = RolloutPlan(
        id="busy", model=good, version="v9", sha256="0" * 64, devices=keys, canary=1, waves=[1, 1]
    )
    store = RolloutStore(console.dir / "rollouts")
    store.save(RolloutState.start(plan))
    with store.lock("busy"):
        line = fail_line(capsys, "rollout", "--resume", "busy")
    assert f"rollout busy is being run by another console (pid {os.getpid()})" in line
    assert store.load("busy").status == "running" and store.load("busy").devices[0].stage == "queued"
    assert all(e.tags == [] for e in console.load())
    # --abort: the same refusals, then a stopped rollout ends for good (nothing took it: all skipped)
    assert "no rollout 'nosuch1'" in fail_line(capsys, "rollout", "--abort", "nosuch1")
    assert "not both" in fail_line(capsys, "rollout", "--abort", "busy", "--resume", "busy")
    code, out, _ = run(capsys, "rollout", "--abort", "busy", "--reason", "wrong model", "--quiet")
    aborted = store.load("busy")
    assert code == 1 and aborted.status == "aborted" and aborted.abort_reason == "wrong model", out
    assert {d.stage for d in aborted.devices} == {"skipped"}
    assert "is aborted: nothing to resume" in fail_line(capsys, "rollout", "--resume", "busy")


def test_tags_are_saved_shown_and_pick_the_devices(console, capsys):
    code, out, _ = run(capsys, "tag", "cam-1", "entrance,line-2")
    assert code == 0 and out.strip() == "cam-1: entrance, line-2"
    run(capsys, "tag", "cam-2", "line-2")
    code, out, _ = run(capsys, "tag", "cam-1", "entrance", "--remove")
    assert out.strip() == "cam-1: line-2"
    assert [e.device.name for e in console.tagged("line-2")] == ["cam-1", "cam-2"]
    # a re-pairing (save_device again) keeps the tags
    entry = console.find("cam-2")
    console.save_device(entry.device, "new-token")
    assert console.find("cam-2").tags == ["line-2"] and console.find("cam-2").token == "new-token"
    # an older devices.json without tags still loads
    raw = json.loads(console.path.read_text())
    for d in raw["devices"]:
        d.pop("tags", None)
    console.path.write_text(json.dumps(raw))
    assert all(e.tags == [] for e in console.load())
    run(capsys, "tag", "cam-3", "dock")
    from fieldtui.cli.main import print_devices
    from fieldtui.protocol import DiscoveryResult

    print_devices(
        DiscoveryResult(devices=[e.device for e in console.load()]),
        tags={e.key: e.tags for e in console.load()},
    )
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["NAME"][-1] == "TAGS" and rows["cam-3"][-1] == "dock" and rows["cam-0"][-1] == "-"
    code, out, _ = run(capsys, "tag", "cam-3", "--clear")
    assert out.strip() == "cam-3: no tags"


# --- on the site -------------------------------------------------------------------------------


def test_a_good_model_rolls_out_canary_first_then_the_rest(site, console, models, capsys):
    code, out, err = run(
        capsys, "rollout", str(models["v1"]), "--version", "v1", "--all", "--canary", "1", "--json"
    )
    assert code == 0, err
    state = json.loads(out)
    assert state["status"] == "done" and state["plan"]["waves"] == [1, 5]
    assert [d["stage"] for d in state["devices"]] == ["done"] * SITE
    assert all(d["via"] == "http" and d["pushed"] and d["previous_version"] is None for d in state["devices"])
    assert all(serving(a) == "v1" and uploads(a, "v1") == 1 for a in site)
    # The canary's probation was over (its verdict recorded) before any other device was activated.
    canary = activation(site[0], "v1")
    assert canary.outcome == "good"
    assert all(activation(a, "v1").ts > canary.updated for a in site[1:])
    assert "wave 1  cam-0" in err and "probation" in err and "wave 2  cam-5" in err
    # the rollout is listed, and its file is what --json printed
    code, out, _ = run(capsys, "rollouts")
    assert state["plan"]["id"] in out and "done" in out and "6/6" in out
    listed = json.loads(run(capsys, "rollouts", "--json")[1])
    assert listed[0]["plan"]["id"] == state["plan"]["id"]
    assert fail_line(capsys, "rollout", "--resume", state["plan"]["id"]).endswith(
        "nothing to resume; start a new rollout"
    )


def test_a_model_failing_probation_on_the_canary_aborts_and_leaves_the_rest_alone(
    site, console, models, capsys
):
    before = [serving(a) for a in site]
    for i in range(SITE):
        console.set_tags(f"cam-{i}", ["hall"])
    code, out, err = run(
        capsys, "rollout", str(models["weak"]), "--version", "weak", "--tag", "hall", "--json"
    )
    assert code == 1, err
    state = json.loads(out)
    assert state["status"] == "aborted"
    canary, *rest = state["devices"]
    assert canary["stage"] == "rolled_back" and "confidence collapsed" in canary["reason"]
    assert "1 device failed (at most 0 allowed)" in state["abort_reason"]
    assert all(d["stage"] == "skipped" and not d["pushed"] for d in rest)
    assert [serving(a) for a in site] == before  # the canary rolled itself back; no other device changed
    assert all(uploads(a, "weak") == 0 for a in site[1:])
    row = next(
        line for line in run(capsys, "rollouts")[1].splitlines() if line.startswith(state["plan"]["id"])
    )
    assert (
        "weak" in row and "aborted" in row and "0/6" in row and "1 device failed (at most 0 allowed)" in row
    )


def test_resume_after_the_console_is_killed_mid_wave_pushes_nothing_twice(site, console, models, capsys):
    before = [serving(a) for a in site]
    env = _clean_env({"FIELDTUI_CONFIG_DIR": str(console.dir)})
    cmd = [
        sys.executable,
        "-m",
        "fieldtui",
        "rollout",
        str(models["v2"]),
        "--version",
        "v2",
        "--all",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline and proc.poll() is None:
            files = rollout_files(console)
            if files:
                try:
                    state = json.loads(files[-1].read_text())
                except ValueError:
                    state = None
                if state and any(d["wave"] == 1 and d["pushed"] for d in state["devices"]):
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)  # no chance to save anything more: the laptop's lid closed
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    rid = state["plan"]["id"]
    on_disk = RolloutStore(console.dir / "rollouts").load(rid)
    assert on_disk.status == "running" and on_disk.current_wave == 1
    assert on_disk.devices[0].stage == "done"
    assert any(d.stage != "done" for d in on_disk.devices[1:])
    code, out, err = run(capsys, "rollout", "--resume", rid, "--json")
    assert code == 0, err
    final = json.loads(out)
    assert final["status"] == "done" and all(d["stage"] == "done" for d in final["devices"])
    assert [uploads(a, "v2") for a in site] == [1] * SITE  # each device got the bytes once
    assert all(serving(a) == "v2" for a in site)
    assert [d["previous_version"] for d in final["devices"]] == before


def test_an_unreachable_device_is_reported_and_does_not_hold_up_its_wave(site, console, models, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens: refused at once
    silent = socket.socket()  # listens, never answers: the connection hangs until the device timeout
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for name, port in (("dead", closed_port), ("silent", silent.getsockname()[1])):
            console.save_device(
                DeviceRecord(name=name, host="127.0.0.1", port=port, origin=["manual"]), "t0ken"
            )
        args = ["rollout", str(models["v3"]), "--version", "v3", "--devices", "cam-0,dead,silent,cam-1"]
        started = time.monotonic()
        code, out, err = run(capsys, *args, "--device-timeout", "2", "--soak", "2", "--json")
        took = time.monotonic() - started
    finally:
        silent.close()
    assert code == 1, err
    state = json.loads(out)
    stages = {d["name"]: (d["stage"], d["reason"]) for d in state["devices"]}
    assert stages["cam-0"][0] == "done" and stages["cam-1"][0] == "done"
    assert stages["dead"][0] == "unreachable" and "refused" in stages["dead"][1].lower()
    assert stages["silent"][0] == "unreachable"
    assert state["status"] == "failed" and "--resume" in state["abort_reason"]
    assert serving(site[0]) == serving(site[1]) == "v3"
    for name in ("cam-0", "cam-1"):  # done only after serving the soak time, probation passed or not
        d = next(d for d in state["devices"] if d["name"] == name)
        assert d["reason"] == "passed probation and 2 s soak" and d["updated_at"] - d["serving_since"] >= 2
    # The silent device cost its timeout, not more: the wave ended with cam-1's probation.
    silent_d = next(d for d in state["devices"] if d["name"] == "silent")
    canary_done = next(d for d in state["devices"] if d["name"] == "cam-0")["updated_at"]
    assert silent_d["updated_at"] - canary_done < 2 + 5
    assert took < 4 * (PROBATION_S + 2) + 2 + 10


def test_the_runner_pauses_resumes_and_aborts_rolling_back_what_took_the_new_version(site, console, tmp_path):
    """The API the TUI drives: pause after the canary (no device of the next wave starts), resume, then
    abort while the next wave is on probation: every device that took the new version goes back."""
    from fieldtui.push import hash_file
    from fieldtui.rollout import RolloutPlan, RolloutRunner, RolloutState

    model = sm.detector(tmp_path / "v4.onnx", seed=4)
    keys = [e.key for e in console.load()][:3]
    before = [serving(a) for a in site[:3]]
    plan = RolloutPlan(
        id="test-abort",
        model=str(model),
        version="v4",
        sha256=asyncio.run(hash_file(model)),
        devices=keys,
        canary=1,
        waves=wave_sizes(3, 1, "100%"),
        device_timeout_s=10,
    )
    store = RolloutStore(tmp_path / "rollouts")
    seen: dict[str, object] = {}

    def on_change(state: RolloutState) -> None:
        canary, *rest = state.devices
        if canary.stage == "done" and "paused" not in seen:
            seen["paused"] = [d.stage for d in rest]
            runner.pause()
            asyncio.get_running_loop().call_later(
                0.6, lambda: (seen.setdefault("resumed", [d.stage for d in rest]), runner.resume())
            )
        if any(d.stage == "probation" for d in rest) and "aborted" not in seen:
            seen["aborted"] = True
            runner.abort("the technician saw enough")

    runner = RolloutRunner(RolloutState.start(plan), store=store, devices=console, on_change=on_change)
    final = asyncio.run(runner.run())
    assert seen["paused"] == ["queued", "queued"] and seen["resumed"] == ["queued", "queued"]
    assert final.status == "aborted" and final.abort_reason == "the technician saw enough"
    assert [d.stage for d in final.devices].count("rolled_back") >= 2, final.devices
    assert all(d.stage in ("rolled_back", "skipped") for d in final.devices), final.devices
    assert "back on" in final.devices[0].reason and "aborted" in final.devices[0].reason
    assert [serving(a) for a in site[:3]] == before
    assert store.load("test-abort").status == "aborted"


def test_an_unreachable_canary_proves_nothing_and_nothing_more_is_pushed(site, console, models, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    console.save_device(DeviceRecord(name="dead", host="127.0.0.1", port=port, origin=["manual"]), "t0ken")
    code, out, err = run(
        capsys, "rollout", str(models["v1"]), "--version", "v1again", "--devices", "dead,cam-4", "--json"
    )
    assert code == 1, err
    state = json.loads(out)
    assert state["status"] == "failed" and "no device of wave 1 could be reached" in state["abort_reason"]
    assert [d["stage"] for d in state["devices"]] == ["unreachable", "skipped"]
    assert uploads(site[4], "v1again") == 0


def test_a_device_whose_api_is_down_is_rolled_out_over_ssh_and_says_so(
    site, console, models, capsys, tmp_path, monkeypatch
):
    """cam-5 saved with a closed API port and an SSH endpoint (tests/ssh_server.py, running the agent's
    CLI on cam-5's home): the rollout pushes, activates and waits for probation over SSH, and says why."""
    from fieldtui.protocol import SSHEndpoint
    from tests.ssh_server import SSHTestServer

    target = site[5]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    agent_port = int(target.url.rsplit(":", 1)[1])  # what agent/server/app.py writes at start-up, and
    target.service.home.write_runtime(  # the in-process agents here do not: the device's CLI finds its agent
        {
            "pid": os.getpid(),
            "api_url": target.url,
            "host": "127.0.0.1",
            "port": agent_port,
            "started": time.time(),
        }
    )
    server = SSHTestServer(tmp_path, target.home).start()
    try:
        monkeypatch.setenv(
            "FIELDTUI_SSH_DIR", str(server.write_client_dir(tmp_path / "dot-ssh", "cam-5-ssh"))
        )
        record = _record(target, "cam-5").model_copy(
            update={"port": port, "ssh": SSHEndpoint(host="cam-5-ssh")}
        )
        console.save_device(record, target.token)
        args = ("rollout", str(models["v3"]), "--version", "v3-ssh", "--devices", "cam-5", "--json")
        code, out, err = run(capsys, *args)
        assert code == 0, err
        device = json.loads(out)["devices"][0]
        assert device["stage"] == "done" and device["via"] == "ssh", device
        assert "refused" in device["link_note"] or "connect" in device["link_note"], device
        assert "via ssh" in err  # the progress lines say it too
        assert serving(target) == "v3-ssh" and uploads(target, "v3-ssh") == 1
        assert any(c.split()[:1] == ["fieldtui-agent"] for c in server.commands)
    finally:
        server.stop()
