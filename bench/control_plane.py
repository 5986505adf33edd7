"""Control-plane cost: does watching the agent slow the pipeline, and how fast does it answer?

    .venv/bin/python bench/control_plane.py [--model PATH] [--fps 200] [--window 10] [--rounds 3]

One real agent subprocess on 127.0.0.1 with the demo source at a high frame rate, so the pipeline is
CPU-bound and any cost of serving shows up as lost frames:

1. Pipeline FPS with 10 SSE subscribers and ``/metrics`` scraped every second, divided by FPS with no
   client at all, in the same run (alternating windows, so drift hits both alike). Target >= 0.97.
   FPS is the ``fieldtui_agent_frames_total`` delta over each window. On a shared machine the windows
   swing with other work, so the agent's CPU seconds per frame (from /proc) are printed too: their
   idle/watched ratio is what the FPS ratio would be on a CPU of the agent's own.
2. ``GET /v1/status`` latency under 50 concurrent clients (one connection each) on loopback, with the
   pipeline at the demo's normal 30 fps: p50, p99, max and requests/s.

Figures are printed, not asserted. The load generator runs on the same machine and its CPU is printed
too: on a small box it competes with the agent, so the ratio is a lower bound of the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fieldtui.client import AgentClient  # noqa: E402
from fieldtui.demo import serve_command, stop_process, wait_ready  # noqa: E402

FPS_RATIO_TARGET = 0.97
_FRAMES = re.compile(r"^fieldtui_agent_frames_total\s+([0-9.e+]+)$", re.MULTILINE)


async def frames_total(client: AgentClient) -> float:
    match = _FRAMES.search(await client.metrics_text())
    if match is None:
        raise SystemExit("the agent's /metrics has no fieldtui_agent_frames_total: is it a current agent?")
    return float(match.group(1))


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Window:
    fps: float
    cpu_ms_per_frame: float | None  # the agent's CPU per processed frame: robust to other load


async def measure(client: AgentClient, pid: int, seconds: float) -> Window:
    t0, f0, c0 = time.monotonic(), await frames_total(client), process_cpu(pid)
    await asyncio.sleep(seconds)
    t1, f1, c1 = time.monotonic(), await frames_total(client), process_cpu(pid)
    frames = max(f1 - f0, 1.0)
    cpu = (c1 - c0) * 1000 / frames if c0 is not None and c1 is not None else None
    return Window((f1 - f0) / (t1 - t0), cpu)


async def subscriber(url: str, token: str, counts: list[int], index: int) -> None:
    async with AgentClient(url, token) as client, client.events() as events:
        async for _ in events:
            counts[index] += 1


async def scraper(url: str, token: str, counts: list[int]) -> None:
    async with AgentClient(url, token) as client:
        while True:
            await client.metrics_text()
            counts[0] += 1
            await asyncio.sleep(1.0)


async def fps_ratio(client: AgentClient, token: str, pid: int, args: argparse.Namespace) -> None:
    print(
        f"\n1. pipeline FPS, demo source at fps={args.fps:g}: {args.rounds} x ({args.window:g} s idle, "
        f"{args.window:g} s with {args.subscribers} SSE subscribers{' + /metrics every 1 s' if args.scrape else ''})"
    )
    idle: list[Window] = []
    watched: list[Window] = []
    events = [0] * args.subscribers
    scrapes = [0]
    cpu0 = time.process_time()
    for r in range(args.rounds):
        idle.append(await measure(client, pid, args.window))
        load = [
            asyncio.create_task(subscriber(client.base_url, token, events, i))
            for i in range(args.subscribers)
        ]
        if args.scrape:
            load.append(asyncio.create_task(scraper(client.base_url, token, scrapes)))
        await asyncio.sleep(1.0)  # let the subscribers connect before the window opens
        watched.append(await measure(client, pid, args.window))
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        i, w = idle[-1], watched[-1]
        cpu = f"   agent CPU/frame {_ms(i.cpu_ms_per_frame)} -> {_ms(w.cpu_ms_per_frame)}"
        print(
            f"   round {r + 1}: idle {i.fps:6.1f} fps   watched {w.fps:6.1f} fps   ratio {w.fps / i.fps:.3f}{cpu}"
        )
    idle_fps = statistics.fmean(x.fps for x in idle)
    watched_fps = statistics.fmean(x.fps for x in watched)
    ratio = watched_fps / idle_fps
    paired = statistics.median(w.fps / i.fps for w, i in zip(watched, idle, strict=True))
    print(
        f"   idle    {idle_fps:6.1f} fps (min {min(x.fps for x in idle):.1f}, max {max(x.fps for x in idle):.1f})"
    )
    print(
        f"   watched {watched_fps:6.1f} fps (min {min(x.fps for x in watched):.1f}, "
        f"max {max(x.fps for x in watched):.1f})"
    )
    print(
        f"   events received {sum(events)} ({sum(events) / max(1, args.subscribers):.0f} per subscriber), "
        f"scrapes {scrapes[0]}, load-generator CPU {time.process_time() - cpu0:.1f} s"
    )
    verdict = "meets" if ratio >= FPS_RATIO_TARGET else "BELOW"
    print(
        f"   FPS ratio watched/idle = {ratio:.3f} (median of the per-round ratios {paired:.3f})  "
        f"({verdict} the target >= {FPS_RATIO_TARGET})"
    )
    cpu_idle = [x.cpu_ms_per_frame for x in idle if x.cpu_ms_per_frame is not None]
    cpu_watched = [x.cpu_ms_per_frame for x in watched if x.cpu_ms_per_frame is not None]
    if cpu_idle and cpu_watched:
        implied = statistics.fmean(cpu_idle) / statistics.fmean(cpu_watched)
        print(
            f"   agent CPU per frame: idle {statistics.fmean(cpu_idle):.2f} ms, watched "
            f"{statistics.fmean(cpu_watched):.2f} ms -> implied FPS ratio on a dedicated CPU {implied:.3f}"
        )


def _ms(value: float | None) -> str:
    return f"{value:.2f} ms" if value is not None else "?"


async def status_latency(url: str, token: str, clients: int, requests: int) -> None:
    print(f"\n2. GET /v1/status: {requests} requests from {clients} concurrent clients (one connection each)")
    per_client = max(1, requests // clients)
    latencies: list[float] = []

    async def one(client: AgentClient) -> None:
        await client.status()  # connect outside the measurement
        for _ in range(per_client):
            t0 = time.perf_counter()
            await client.status()
            latencies.append(time.perf_counter() - t0)

    agents = [AgentClient(url, token, timeout=30.0) for _ in range(clients)]
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(c) for c in agents))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await asyncio.gather(*(c.aclose() for c in agents))
    qs = statistics.quantiles(latencies, n=100, method="inclusive")
    ms = 1000.0
    print(f"   p50 {qs[49] * ms:.1f} ms   p99 {qs[98] * ms:.1f} ms   max {max(latencies) * ms:.1f} ms")
    print(
        f"   {len(latencies) / elapsed:.0f} requests/s over {elapsed:.1f} s (load-generator CPU {cpu:.1f} s)"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="fieldtui-bench-") as tmp:
        home = Path(tmp) / "agent"
        home.mkdir(mode=0o700)
        cmd = serve_command(home, f"demo:?fps={args.fps:g}", mdns=False)
        if args.model:
            cmd += ["--model", str(Path(args.model).resolve())]
        log_path = Path(tmp) / "serve.log"
        with open(log_path, "wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        try:
            info, device = await wait_ready(proc, home, log_path, 120.0)
            async with AgentClient(info.api_url, info.token) as client:
                status = await client.status()
                model = status.model
                print(
                    f"agent {device.version} at {info.api_url}, pid {proc.pid}; model "
                    f"{Path(model.path).name if model else '?'} {model.input_shape if model else ''} "
                    f"on {model.backend if model else '?'}"
                )
                load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
                print(f"machine: {os.cpu_count()} CPUs, load average {load} (other work skews every figure)")
                await asyncio.sleep(args.warmup)
                await fps_ratio(client, info.token, proc.pid, args)

                job = await client.set_source("demo:")  # the demo's normal 30 fps for part 2
                await client.wait_job(job.id, timeout=60)
                await asyncio.sleep(2.0)
                await status_latency(info.api_url, info.token, args.clients, args.requests)
        finally:
            code = await stop_process(proc)
            print(f"\nagent stopped (exit {code})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="ONNX model (default: the agent's embedded demo model)")
    p.add_argument("--fps", type=float, default=200.0, help="demo source frame rate for part 1 (default 200)")
    p.add_argument("--window", type=float, default=10.0, help="seconds per measurement window (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="idle/watched window pairs (default 3)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring (default 5)")
    p.add_argument("--subscribers", type=int, default=10, help="SSE subscribers while watched (default 10)")
    p.add_argument(
        "--no-scrape",
        dest="scrape",
        action="store_false",
        help="no /metrics scrapes (to isolate the SSE cost)",
    )
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=2000)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
