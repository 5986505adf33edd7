"""Shared fixtures: real agents on 127.0.0.1 for every test that needs one.

``agent_home``
    A fresh, empty agent home (a temp dir; the agent makes token, state.db, ... inside).

``agent_proc``
    A real ``python -m agent serve --home H --host 127.0.0.1 --port 0 --no-mdns --source demo:``
    subprocess with the small test model (:func:`tiny_model`), started once the runtime file
    ``H/agent.json`` names it. Yields a :class:`RunningAgent` (``url``, ``token``, ``home``, ``proc``,
    ``headers``, ``client()``). At the end: SIGTERM, wait, kill after 10 s.

``start_agent``
    The factory behind ``agent_proc``, for tests that need options or several agents:
    ``start_agent(home=None, *extra_args, model=..., source="demo:", mdns=False, env=None)``; pass
    ``model=None`` for the embedded demo model. Every agent it starts is stopped at teardown;
    ``agent.stop()`` stops one earlier and returns its exit code.

``agent_inproc``
    The same agent in this process (uvicorn in a thread, no subprocess start-up), with
    ``agent.server.service`` (the :class:`~agent.server.service.AgentService`) for white-box checks. Cheaper;
    use it when the test does not need signals or a separate process. ``inproc_agent(...)`` is the
    factory (``auth_policy=``, ``source=``) behind it; ``module_agent`` is one such agent shared by all
    the tests of a module (each test must leave it as it found it).

``tiny_model``
    Path to a 128x128 ONNX detector with the demo's four class names (built with tests/modelgen.py):
    real onnxruntime inference at a fraction of the demo model's CPU cost, for tests about the control
    plane rather than about detection quality.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0  # start-up imports onnxruntime and OpenCV; the shared CI box may be busy
STOP_TIMEOUT_S = 10.0
DEMO_CLASSES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}


@dataclass
class RunningAgent:
    url: str
    token: str
    home: Path
    proc: subprocess.Popen | None = None
    service: Any = None  # AgentService, in-process agents only
    stderr_path: Path | None = None
    _stop: Callable[[], int | None] | None = field(default=None, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for this agent with the token; ``headers=`` adds to it."""
        kwargs.setdefault("timeout", 10.0)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        return httpx.Client(base_url=self.url, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10.0)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        return httpx.AsyncClient(base_url=self.url, **kwargs)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def stop(self) -> int | None:
        """Stop now (SIGTERM, then kill after 10 s for a subprocess); the exit code, None in-process."""
        return self._stop() if self._stop else None


@pytest.fixture(scope="session")
def demo_batch3_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model built for a fixed batch of 3 (several cameras a call; issue 19)."""
    from tests.modelgen import demo_with_batch

    return demo_with_batch(tmp_path_factory.mktemp("models-b3"), 3)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests import modelgen as mg

    out = mg.yolov8_output([(64, 64, 24, 24, 1, 0.9), (30, 30, 12, 12, 0, 0.6)], nc=4, anchors=336)
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    mg.save_model(
        path, [out], input_shape=(1, 3, 128, 128), metadata=mg.ultralytics_metadata(DEMO_CLASSES, imgsz=128)
    )
    return path


@pytest.fixture
def agent_home(tmp_path: Path) -> Path:
    home = tmp_path / "agent-home"
    home.mkdir(mode=0o700)
    return home


def _clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_AGENT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def _terminate(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            pytest.fail(f"agent pid {proc.pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s and was killed")
    return proc.returncode


def wait_for_runtime(home: Path, proc: subprocess.Popen, stderr_path: Path) -> dict[str, Any]:
    """The runtime file of ``proc`` once it is listening; fails the test with its stderr if it died."""
    deadline = time.monotonic() + START_TIMEOUT_S
    runtime = home / "agent.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"agent exited with {proc.returncode} before listening:\n{stderr_path.read_text()}")
        with contextlib.suppress(FileNotFoundError, ValueError):
            info = json.loads(runtime.read_text())
            if info.get("pid") == proc.pid:
                return info
        time.sleep(0.05)
    _terminate(proc)
    pytest.fail(f"agent did not write {runtime} within {START_TIMEOUT_S:.0f} s:\n{stderr_path.read_text()}")


@pytest.fixture
def start_agent(tmp_path: Path, tiny_model: Path) -> Iterator[Callable[..., RunningAgent]]:
    procs: list[subprocess.Popen] = []
    counter = iter(range(1000))

    def start(
        home: Path | None = None,
        *extra_args: str,
        model: Path | None | str = "tiny",
        source: str = "demo:",
        mdns: bool = False,
        env: dict[str, str] | None = None,
    ) -> RunningAgent:
        n = next(counter)
        home = home or tmp_path / f"agent-home-{n}"
        args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
        args += ["--port", "0", "--source", source]
        if not mdns:
            args.append("--no-mdns")
        if model is not None:
            args += ["--model", str(tiny_model if model == "tiny" else model)]
        args += list(extra_args)
        stderr_path = tmp_path / f"agent-{n}.stderr"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=err, env=_clean_env(env), cwd=REPO
            )
        procs.append(proc)
        info = wait_for_runtime(home, proc, stderr_path)
        token = (home / "token").read_text().strip()
        return RunningAgent(
            url=info["api_url"],
            token=token,
            home=home,
            proc=proc,
            stderr_path=stderr_path,
            _stop=lambda: _terminate(proc),
        )

    yield start
    for proc in procs:
        _terminate(proc)


@pytest.fixture
def agent_proc(start_agent: Callable[..., RunningAgent], agent_home: Path) -> RunningAgent:
    return start_agent(agent_home)


def start_inproc(
    home: Path,
    tiny_model: Path,
    *,
    source: str = "demo:",
    model: Path | None | str = "tiny",
    auth_policy: Any = None,
    tls: bool = False,
) -> RunningAgent:
    """An agent in this process (uvicorn in a thread) serving ``home``; ``.stop()`` ends it (once)."""
    import logging

    from agent.core.config import load_config
    from agent.server.app import bind_socket, make_server
    from agent.server.service import AgentService

    config = load_config(
        home=home,
        env={},
        overrides={
            "host": "127.0.0.1",
            "port": 0,
            "source": source,
            "mdns": False,
            "tls": tls,
            "model": str(tiny_model if model == "tiny" else model) if model else None,
        },
    )
    service = AgentService.create(config, auth_policy=auth_policy)
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(min(old_level or logging.WARNING, logging.INFO))  # as `serve` does: INFO and up
    root.addHandler(service.logs)
    service.start()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    service.api_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    server = make_server(service, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "in-process uvicorn did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        root.removeHandler(service.logs)
        root.setLevel(old_level)
        service.close()
        assert not thread.is_alive(), "in-process uvicorn did not stop"

    done = {"stopped": False}

    def stop_once() -> None:
        if not done["stopped"]:
            done["stopped"] = True
            stop()

    return RunningAgent(
        url=service.api_url, token=service.token, home=Path(home), service=service, _stop=stop_once
    )


@pytest.fixture
def inproc_agent(tmp_path: Path, tiny_model: Path) -> Iterator[Callable[..., RunningAgent]]:
    """Factory: ``inproc_agent(home=None, *, source="demo:", model=tiny, auth_policy=None, tls=False)``."""
    agents: list[RunningAgent] = []
    counter = iter(range(1000))

    def start(home: Path | None = None, **options: Any) -> RunningAgent:
        agent = start_inproc(home or tmp_path / f"inproc-home-{next(counter)}", tiny_model, **options)
        agents.append(agent)
        return agent

    yield start
    for agent in reversed(agents):
        agent.stop()


@pytest.fixture(scope="module")
def module_agent(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[RunningAgent]:
    """One in-process agent shared by the tests of a module: one start-up for them all."""
    agent = start_inproc(tmp_path_factory.mktemp("module-agent"), tiny_model)
    yield agent
    agent.stop()


@pytest.fixture
def agent_inproc(inproc_agent: Callable[..., RunningAgent], agent_home: Path) -> RunningAgent:
    return inproc_agent(agent_home)
