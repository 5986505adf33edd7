"""A real multi-camera agent for console tests: ``fieldtui-agent serve`` under uvicorn on 127.0.0.1 with
``[[cameras]]`` in its config.toml (demo cameras at a low frame rate, so three fit on a shared CI box).
Module-scoped fixtures start one and share it between the tests of a module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, RunningAgent, _clean_env, _terminate, wait_for_runtime


def demo(seed: int, fps: int = 5, faults: str = "") -> str:
    return f"demo:?fps={fps}&size=160x120&seed={seed}" + (f"&faults={faults}" if faults else "")


def cameras_toml(cameras: list[tuple[str, str]]) -> str:
    return "".join(f'[[cameras]]\nname = "{n}"\nsource = "{s}"\n\n' for n, s in cameras)


def serve_cameras(base: Path, model: Path, cameras: list[tuple[str, str]]) -> RunningAgent:
    """The agent serving ``cameras`` from a new home under ``base``; ``stop()`` ends it."""
    home = base / "home"
    home.mkdir(mode=0o700, parents=True)
    (home / "config.toml").write_text(cameras_toml(cameras))
    args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
    args += ["--port", "0", "--no-mdns", "--model", str(model)]
    stderr_path = base / "agent.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=_clean_env(None), cwd=REPO)
    info = wait_for_runtime(home, proc, stderr_path)
    return RunningAgent(
        url=info["api_url"],
        token=(home / "token").read_text().strip(),
        home=home,
        proc=proc,
        stderr_path=stderr_path,
        _stop=lambda: _terminate(proc),
    )
