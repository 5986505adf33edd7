"""The control plane under a socket flood: /v1/health, /metrics and /v1/status latency with and without
idle connections held open against the agent (prints figures; never asserts).

    .venv/bin/python bench/flood.py                  # 1,100 idle sockets, agent file limit 1024
    .venv/bin/python bench/flood.py --sockets 3000 --file-limit 1024

A real ``fieldtui-agent serve`` on 127.0.0.1 with its RLIMIT_NOFILE set as systemd's default (1024) -
the agent raises its soft limit to the hard one, so the hard one is set too. The flood comes from forty
loopback addresses (127.0.0.10-49), each socket connected and then silent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import httpx  # noqa: E402


def probe(url: str, token: str, rounds: int = 20) -> dict[str, tuple[float, float, int]]:
    """Per route: (p50 ms, max ms, failures) over ``rounds`` fresh connections."""
    out = {}
    for route, auth in (("/v1/health", False), ("/metrics", False), ("/v1/status", True)):
        times, failures = [], 0
        for _ in range(rounds):
            headers = {"Connection": "close", **({"Authorization": f"Bearer {token}"} if auth else {})}
            t0 = time.perf_counter()
            try:
                ok = httpx.get(url + route, headers=headers, timeout=5.0).status_code == 200
            except httpx.HTTPError:
                ok = False
            times.append((time.perf_counter() - t0) * 1000)
            failures += not ok
        out[route] = (statistics.median(times), max(times), failures)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1100)
    parser.add_argument("--file-limit", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=20, help="requests per route (5 s timeout each)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, args.sockets + 512), hard))

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_AGENT_")}
        cmd = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
        cmd += ["--port", "0", "--no-mdns", "--source", "demo:?fps=10&size=320x240"]
        limit = args.file_limit

        def lower() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lower
        )
        socks: list[socket.socket] = []
        try:
            runtime = home / "agent.json"
            deadline = time.monotonic() + 90
            while not runtime.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            info = json.loads(runtime.read_text())
            url, port = info["api_url"], info["port"]
            token = (home / "token").read_text().strip()
            time.sleep(3)
            quiet = probe(url, token, args.rounds)
            per = args.sockets // 40 + 1
            for i in range(40):
                for _ in range(per):
                    s = socket.socket()
                    s.setblocking(False)
                    s.bind((f"127.0.0.{10 + i}", 0))
                    with contextlib.suppress(BlockingIOError, OSError):
                        s.connect(("127.0.0.1", port))
                    socks.append(s)
            time.sleep(2)
            flooded = probe(url, token, args.rounds)
            try:
                metrics = httpx.get(url + "/metrics", timeout=10).text
            except httpx.HTTPError as err:
                metrics = f"(no /metrics under the flood: {type(err).__name__})"
        finally:
            for s in socks:
                s.close()
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
    print(f"agent file limit {limit}; flood: {len(socks)} idle sockets from 40 addresses")
    print(f"{'route':<12} {'quiet p50':>10} {'flood p50':>10} {'flood max':>10} {'failed':>7}")
    for route in quiet:
        q, f = quiet[route], flooded[route]
        print(f"{route:<12} {q[0]:>8.1f}ms {f[0]:>8.1f}ms {f[1]:>8.1f}ms {f[2]:>4}/{args.rounds}")
    for line in metrics.splitlines():
        if line.startswith(
            ("fieldtui_agent_http_connections ", "fieldtui_agent_http_connections_closed_total{")
        ):
            print(" ", line)
    lines = err.decode(errors="replace").splitlines()
    print(
        f"agent stderr: {len(lines)} lines, {sum('out of system resource' in ln for ln in lines)} accept() failures"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
