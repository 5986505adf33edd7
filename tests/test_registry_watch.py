"""``fieldtui registry rollout --watch``: a pull rollout driven by a real Prometheus server (Debian's
``prometheus``, started here on 127.0.0.1 with a 1 s scrape of two real agents that pull from the
registry), and the counters it reads from the agents' /metrics."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fieldtui.errors import ConsoleError
from fieldtui.protocol.offers import cohort_point
from fieldtui.registry import ModelFolder
from fieldtui.registry_watch import Prometheus, RolloutWatch
from tests import storemodels as sm
from tests.conftest import RunningAgent, _terminate
from tests.console_cli import fail_line, run
from tests.storeclient import activate, listing, upload, wait_for
from tests.test_registry import registry

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus server is missing: apt-get install --no-install-recommends prometheus",
)
SOURCE = "demo:?fps=15&size=160x120"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def prometheus_server(tmp: Path, targets: list[str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """Prometheus on 127.0.0.1 scraping ``targets`` (host:port) every second; yields (URL, process)."""
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: fieldtui-agent\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            return False

        wait_for(ready, timeout=30, every=0.2)
        yield url, proc
    finally:
        _terminate(proc)


@dataclass
class Site:
    folder: Path
    agents: list[RunningAgent]
    ids: list[str]
    prometheus: str

    def serving(self, agent: RunningAgent) -> str | None:
        with agent.client() as c:
            return listing(c).serving.version

    def canaries(self, rollout_id: str) -> tuple[list[RunningAgent], list[float]]:
        """The agents in the order the rollout ``rollout_id`` takes them, and a percent between each
        two (the first step takes exactly the first agent, and so on)."""
        points = sorted((cohort_point(d, rollout_id), i) for i, d in enumerate(self.ids))
        steps = [(a[0] + b[0]) / 2 for a, b in zip(points, points[1:], strict=False)]
        return [self.agents[i] for _, i in points], steps


def series(agent: RunningAgent, name: str) -> dict[tuple[str, str], float]:
    """``name``'s samples on the agent's own /metrics, by (version, outcome)."""
    text = httpx.get(f"{agent.url}/metrics", timeout=5).text
    return {
        (s.labels["version"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


@pytest.fixture
def site(inproc_agent, tmp_path) -> Iterator[Site]:
    """Two real agents (on their configured model) polling a registry folder, and Prometheus scraping
    them. The folder starts with a rollout of ``weak`` at 0 %: offered, taken by nobody."""
    folder = tmp_path / "registry"
    sm.detector(folder / "v2.onnx", seed=2)
    sm.detector(folder / "weak.onnx", seed=3, score=0.27)  # confidence collapses on probation
    ModelFolder(folder).set_rollout("weak", 0)
    with registry(folder) as url:
        settings = {"registry": url, "registry_poll_s": 0.3, "probation_s": 1.0, "probation_min_frames": 3}
        body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
        agents = []
        for i in range(2):
            home = tmp_path / f"agent-{i}"
            home.mkdir(mode=0o700)
            (home / "config.toml").write_text(f"[models]\n{body}\n")
            agents.append(inproc_agent(home, source=SOURCE))
        targets = [agent.url.removeprefix("http://") for agent in agents]
        with prometheus_server(tmp_path, targets) as (prom, _):
            yield Site(folder, agents, [a.service.device_id for a in agents], prom)


def watch(capsys, site: Site, version: str, steps: list[float], soak: float) -> tuple[int, str]:
    """``fieldtui registry rollout DIR --version V --watch PROMETHEUS --step ...``: (exit status, stdout)."""
    step = ",".join(f"{s:.4f}" for s in steps)
    code, out, _ = run(
        capsys,
        *("registry", "rollout", str(site.folder), "--version", version, "--watch", site.prometheus),
        *("--step", step, "--max-failure-rate", "0.1", "--interval", "0.5", "--soak", str(soak)),
    )
    return code, out


def test_a_rollout_stops_at_a_canary_that_rolls_back_and_a_good_one_steps_to_100(site, capsys):
    # a model that fails probation: the canary takes it, rolls back, and the percent goes back to 0
    order, between = site.canaries("weak")
    code, out = watch(capsys, site, "weak", [between[0], 100.0], soak=15)
    assert code == 1, out
    assert "stopped: the failure rate of weak is 100% (1 of 1 devices), above --max-failure-rate 0.1" in out
    staged = json.loads((site.folder / "rollout.json").read_text())
    assert staged == {"id": "weak", "version": "weak", "percent": 0}
    assert not (site.folder / "latest").exists()  # the last step (100) was never reached
    canary, others = order[0], order[1:]
    assert series(canary, "fieldtui_agent_probations_total")[("weak", "rolled_back")] == 1
    assert series(canary, "fieldtui_agent_activations_total")[("weak", "ok")] == 1
    wait_for(lambda: site.serving(canary) is None)  # back on its configured model
    time.sleep(0.6)  # a few more polls: nobody else takes it now
    for agent in others:
        assert site.serving(agent) is None
        assert not any(v == "weak" for v, _ in series(agent, "fieldtui_agent_activations_total"))

    # then a good model: each canary passes probation before the next step, and the last one ends it
    order, between = site.canaries("v2")
    code, out = watch(capsys, site, "v2", [between[0], 100.0], soak=3)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"watching through Prometheus at {site.prometheus}")
    shown = [f"{float(f'{s:.4f}'):g}" for s in between]  # as the command prints the steps it was given
    assert f"{shown[0]}%: 1 serving, 1 passed probation, 0 on probation" in out
    assert lines[-1] == "rollout of v2 ended: every device is offered it (latest = v2)"
    assert not (site.folder / "rollout.json").exists()
    for agent in order:
        wait_for(lambda a=agent: site.serving(a) == "v2")
    passed = series(order[0], "fieldtui_agent_probations_total")
    assert passed[("v2", "passed")] == 1 and passed[("v2", "rolled_back")] == 0
    info = httpx.get(f"{order[0].url}/metrics", timeout=5).text
    assert 'fieldtui_agent_model_info{backend="onnxruntime"' in info and 'version="v2"' in info

    # an activation its health check refuses (NaN outputs) counts as failed, and v2 keeps serving
    nan = sm.nan_detector(site.folder.parent / "nan.onnx")
    with order[1].client() as c:
        assert upload(c, nan, "nan1").status_code < 300
        assert activate(c, "nan1").state == "failed"
    assert series(order[1], "fieldtui_agent_activations_total")[("nan1", "failed")] == 1
    assert site.serving(order[1]) == "v2"


def test_bad_input_changes_nothing_and_losing_prometheus_leaves_the_rollout_where_it_is(tmp_path, capsys):
    folder = tmp_path / "registry"
    sm.detector(folder / "v2.onnx", seed=2)
    with prometheus_server(tmp_path, []) as (prometheus, proc):
        _refusals(capsys, folder, prometheus)
        # a step that no device takes (no agent here) proves nothing: it waits twice the soak, then goes on
        quiet: list[str] = []
        watch = RolloutWatch(
            ModelFolder(folder),
            "v2",
            [5.0, 100.0],
            Prometheus(prometheus),
            interval=0.1,
            soak=0.3,
            say=quiet.append,
        )
        assert watch.run() == 0
        assert "  5%: no device gave a verdict on v2 in 0.6 s (too few devices at this step" in quiet[-2]
        assert (folder / "latest").read_text() == "v2\n"
        said: list[str] = []

        def say(line: str) -> None:
            said.append(line)
            if line.startswith("watching"):  # Prometheus answered once: now it goes away
                _terminate(proc)

        watch = RolloutWatch(
            ModelFolder(folder), "v2", [5.0, 100.0], Prometheus(prometheus), interval=0.1, soak=30, say=say
        )
        with pytest.raises(ConsoleError) as err:
            watch.run()
    assert str(err.value).startswith(f"cannot reach Prometheus at {prometheus}")
    assert str(err.value).endswith(
        "the rollout of v2 stays at 5% (rerun with --watch to go on, or --percent 0 to stop it)"
    )
    assert json.loads((folder / "rollout.json").read_text())["percent"] == 5
    assert said[1] == "rollout 'v2': v2 offered to 5% of devices"


def _refusals(capsys, folder: Path, prometheus: str) -> None:
    """Every refusal is one line, before anything is written."""

    def refused(*args: str, version: str = "v2") -> str:
        return fail_line(capsys, "registry", "rollout", str(folder), "--version", version, *args)

    nobody = f"http://127.0.0.1:{free_port()}"
    line = refused("--watch", nobody, "--step", "5,100")
    assert line.startswith(f"fieldtui: cannot reach Prometheus at {nobody} (ConnectError")
    with registry(folder) as url:  # a web server, but not Prometheus: the line says what to give
        line = refused("--watch", url, "--step", "5,100")
    assert f"{url} answered HTTP 404 but not as Prometheus's API" in line
    with pytest.raises(ConsoleError, match=r"refused the query \(bad_data: .*\): sum\($"):
        Prometheus(prometheus).query("sum(")
    for args, message in [
        (["--step", "25,5"], "the steps must rise (5 follows 25)"),
        (["--step", "5,x"], "'x' is not a percent"),
        (["--step", "0,100"], "0 is out of range"),
        ([], "--watch needs --step"),
    ]:
        assert message in refused("--watch", prometheus, *args)
    assert "no model file for version 'v9'" in refused("--watch", prometheus, "--step", "5", version="v9")
    assert "--step goes with --watch" in refused("--percent", "5", "--step", "5")
    assert sorted(p.name for p in folder.iterdir()) == ["v2.onnx"]  # nothing written
