"""Discovery by probe: a /24 swept for agents, how long it takes, how many sockets it holds open.

    .venv/bin/python bench/discovery.py [--agents 5] [--silent 200] [--limits 1,16,128] [--rounds 3]

Five real agents (``fieldtui-agent serve``, demo source at 1 fps so they idle) listen on one port P at
spread-out addresses of 127.0.0.0/24. The probe of :mod:`fieldtui.probe` then sweeps the whole /24 on
ports 8470 and P (as ``fieldtui discover --probe 127.0.0.0/24 --port P`` does: 254 addresses x 2
ports) once per concurrency limit, side by side in one run, and prints for each:

- agents found (of the five; anything else answering on 127.0.0.0/24 is listed apart),
- wall time of the sweep (median of the rounds),
- the peak number of sockets this process held open during the sweep, counted from /proc/self/fd by a
  sampling thread (every ~0.2 ms, minus the sockets open before the sweep), next to the probe's own
  count of connections in flight; neither may exceed the limit.

Two scenarios. "refused": every other address refuses at once (a closed port on loopback). "silent":
like a LAN, where an address with no host never answers and costs the connect timeout (0.75 s):
``--silent`` addresses listen on P with a full accept queue, so the kernel drops the probe's SYN and
the connect times out, as for an empty address on a LAN. There the limit matters: about
ceil(silent / limit) x 0.75 s. Limits whose silent sweep would take over a minute are skipped.
Only loopback is ever probed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fieldtui.probe import CONNECT_TIMEOUT_S, Prober, addresses, parse_ports, parse_range  # noqa: E402
from tests.loopback_agents import common_port  # noqa: E402

RANGE = "127.0.0.0/24"
START_TIMEOUT_S = 90.0


def open_sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass  # closed while we looked
    return n


class SocketSampler:
    """Counts this process's open sockets in a thread until stopped; ``peak`` is the most seen."""

    def __init__(self) -> None:
        self.baseline = open_sockets()
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, open_sockets() - self.baseline)
            self.samples += 1
            time.sleep(0.0002)

    def __enter__(self) -> SocketSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def silence(hosts: list[str], port: int) -> list[socket.socket]:
    """Listeners on ``hosts``:``port`` whose accept queue is full: later SYNs are dropped, unanswered."""
    held = []
    for host in hosts:
        srv = socket.socket()
        srv.bind((host, port))
        srv.listen(0)
        held.append(srv)
        for _ in range(2):  # fills the queue (backlog 0 holds one); never accepted
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex((host, port))
            held.append(c)
    time.sleep(0.1)
    return held


def start_agents(tmp: Path, hosts: list[str], port: int) -> list[tuple[subprocess.Popen, Path]]:
    procs = []
    for host in hosts:
        home = tmp / host
        cmd = [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--home",
            str(home),
            "--host",
            host,
            "--port",
            str(port),
        ]
        cmd += ["--source", "demo:?fps=1&size=160x120", "--no-mdns", "--name", f"bench-{host}"]
        log = open(tmp / f"{host}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log), home))
    deadline = time.monotonic() + START_TIMEOUT_S
    for (proc, home), host in zip(procs, hosts, strict=True):
        while not (home / "agent.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the agent on {host} did not start: {(tmp / f'{host}.log').read_text()[-800:]}"
                )
            time.sleep(0.1)
    return procs


async def sweep(limit: int, port: int) -> tuple[float, int, int, list]:
    prober = Prober(concurrency=limit)
    with SocketSampler() as sampler:
        report = await prober.run([parse_range(RANGE)], parse_ports([port]))
    return report.elapsed_s, sampler.peak, report.peak_open, report.devices


def run(
    hosts: list[str], port: int, probes: int, limits: list[int], rounds: int, label: str, silent: int
) -> None:
    print(f"\n{label}")
    print(f"{'limit':>5}  {'found':>5}  {'others':>6}  {'wall s (median)':>15}  {'peak sockets':>12}  "
          f"{'peak in flight':>14}  {'expected s':>10}")  # fmt: skip
    walls: dict[int, float] = {}
    for limit in limits:
        expected = math.ceil(silent / limit) * CONNECT_TIMEOUT_S
        if expected > 60:
            print(f"{limit:>5}  skipped: about {expected:.0f} s")
            continue
        times, peaks, inflight = [], [], []
        found = others = 0
        for _ in range(rounds):
            elapsed, peak, flying, devices = asyncio.run(sweep(limit, port))
            times.append(elapsed)
            peaks.append(peak)
            inflight.append(flying)
            found = len({(d.host, d.port) for d in devices if d.host in hosts and d.port == port})
            others = len(devices) - found
            if found != len(hosts):
                print(f"  !! a round found {found} of {len(hosts)} agents")
        walls[limit] = statistics.median(times)
        verdict = "ok" if max(peaks) <= limit and max(inflight) <= limit else "OVER THE LIMIT"
        print(f"{limit:>5}  {found:>3}/{len(hosts)}  {others:>6}  {walls[limit]:>15.2f}  "
              f"{max(peaks):>12}  {max(inflight):>14}  {expected:>10.1f}  {verdict}")  # fmt: skip
    if len(walls) > 1:
        lo, hi = min(walls), max(walls)
        print(f"wall time, limit {lo} / limit {hi}: {walls[lo] / walls[hi]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--silent", type=int, default=200, help="addresses that never answer (0: none)")
    parser.add_argument("--limits", default="1,16,128", help="concurrency limits to compare")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    net = ipaddress.ip_network(RANGE)
    step = 250 // args.agents
    hosts = [str(net[10 + i * step]) for i in range(args.agents)]  # spread over the range, never .1
    others = [str(net[i]) for i in range(2, 255) if str(net[i]) not in hosts]
    silent = others[: args.silent]
    port = common_port(hosts + silent)
    probes = len(addresses([net])) * 2
    print(
        f"agents on {', '.join(hosts)} port {port}; sweep of {RANGE} on ports 8470 and {port}: {probes} probes"
    )
    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        procs = start_agents(Path(tmp), hosts, port)
        try:
            run(hosts, port, probes, limits, args.rounds, "refused: other addresses refuse at once", 0)
            if silent:
                held = silence(silent, port)
                try:
                    label = f"silent: {len(silent)} addresses never answer on {port}, as empty ones on a LAN"
                    run(hosts, port, probes, limits, args.rounds, label, len(silent))
                finally:
                    for sock in held:
                        sock.close()
        finally:
            for proc, _ in procs:
                proc.terminate()
            for proc, _ in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    main()
