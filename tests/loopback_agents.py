"""Several real agents on distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) sharing one port.

A probe sweeps a fixed port over a range of addresses, so "port 0" cannot serve: :func:`common_port`
finds a port free on every address, and :func:`start_agents` starts ``fieldtui-agent serve --host
127.0.0.x --port P`` on each at once (start-up is mostly imports; in parallel it costs one start).
Only loopback addresses are ever used.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.conftest import REPO, RunningAgent, _clean_env, _terminate, wait_for_runtime


def common_port(hosts: Sequence[str], tries: int = 50) -> int:
    """A TCP port nothing listens on at any of ``hosts`` (all loopback) right now."""
    assert all(ipaddress.ip_address(h).is_loopback for h in hosts), "loopback addresses only"
    for _ in range(tries):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            ok = True
            for host in hosts[1:]:
                with socket.socket() as s:
                    try:
                        s.bind((host, port))
                    except OSError:
                        ok = False
                        break
            if ok:
                return port
    raise RuntimeError(f"no port free on all of {', '.join(hosts)}")


@contextlib.contextmanager
def start_agents(
    tmp: Path, tiny_model: Path, hosts: Sequence[str], port: int, *, tls: Sequence[str] = ()
) -> Iterator[list[RunningAgent]]:
    """One agent per address of ``hosts``, all on ``port`` (those in ``tls`` with HTTPS); stopped after."""
    procs: list[tuple[subprocess.Popen, Path, Path]] = []
    try:
        for i, host in enumerate(hosts):
            assert ipaddress.ip_address(host).is_loopback, "loopback addresses only"
            home = tmp / f"agent-{host}"
            stderr_path = tmp / f"agent-{host}.stderr"
            args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", host]
            args += ["--port", str(port), "--source", "demo:", "--no-mdns", "--model", str(tiny_model)]
            args += ["--name", f"probe-{i}"]
            if host in tls:
                args.append("--tls")
            with open(stderr_path, "wb") as err:
                proc = subprocess.Popen(
                    args, stdout=subprocess.DEVNULL, stderr=err, env=_clean_env(None), cwd=REPO
                )
            procs.append((proc, home, stderr_path))
        agents = []
        for proc, home, stderr_path in procs:
            info = wait_for_runtime(home, proc, stderr_path)
            token = (home / "token").read_text().strip()
            agents.append(
                RunningAgent(
                    url=info["api_url"],
                    token=token,
                    home=home,
                    proc=proc,
                    stderr_path=stderr_path,
                    _stop=lambda p=proc: _terminate(p),
                )
            )
        yield agents
    finally:
        for proc, _, _ in procs:
            _terminate(proc)


def device_id(agent: RunningAgent) -> str:
    """The agent's device id, as the agent keeps it in its home (what ``GET /v1/device`` says)."""
    return (agent.home / "device_id").read_text().strip()
