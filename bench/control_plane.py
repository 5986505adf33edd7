"""Control-plane cost: does watching the agent slow the pipeline, and how fast does it answer?

    .venv/bin/python bench/control_plane.py [--model PATH] [--fps 200] [--window 10] [--rounds 3]

One real agent subprocess on 127.0.0.1 with the demo source at a high frame rate, so the pipeline is
CPU-bound and any cost of serving shows up as lost frames:

1. Pipeline FPS with 10 SSE subscribers and ``/metrics`` scraped every second, divided by FPS with no
   client at all, in the same run (alternating windows, so drift hits both alike). Target >= 0.97.
   FPS is the ``fieldtui_agent_frames_total`` delta over each window.
2. ``GET /v1/status`` latency under 50 concurrent clients (one connection each) on loopback, with the
   pipeline at the demo's normal 30 fps: p50, p99, max and requests/s.

Figures are printed, not asserted. The load generator runs on the same machine and its CPU is printed
too: on a small box it competes with the agent, so the ratio is a lower bound of the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
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


async def window_fps(client: AgentClient, seconds: float) -> float:
    t0, f0 = time.monotonic(), await frames_total(client)
    await asyncio.sleep(seconds)
    t1, f1 = time.monotonic(), await frames_total(client)
    return (f1 - f0) / (t1 - t0)


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


async def fps_ratio(client: AgentClient, token: str, args: argparse.Namespace) -> None:
    print(
        f"\n1. pipeline FPS, demo source at fps={args.fps:g}: {args.rounds} x ({args.window:g} s idle, "
        f"{args.window:g} s with {args.subscribers} SSE subscribers + /metrics every 1 s)"
    )
    idle, watched = [], []
    events = [0] * args.subscribers
    scrapes = [0]
    cpu0 = time.process_time()
    for r in range(args.rounds):
        idle.append(await window_fps(client, args.window))
        load = [
            asyncio.create_task(subscriber(client.base_url, token, events, i))
            for i in range(args.subscribers)
        ]
        load.append(asyncio.create_task(scraper(client.base_url, token, scrapes)))
        await asyncio.sleep(1.0)  # let the subscribers connect before the window opens
        watched.append(await window_fps(client, args.window))
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        print(f"   round {r + 1}: idle {idle[-1]:6.1f} fps   watched {watched[-1]:6.1f} fps")
    ratio = statistics.fmean(watched) / statistics.fmean(idle)
    print(f"   idle    {statistics.fmean(idle):6.1f} fps (min {min(idle):.1f}, max {max(idle):.1f})")
    print(f"   watched {statistics.fmean(watched):6.1f} fps (min {min(watched):.1f}, max {max(watched):.1f})")
    print(
        f"   events received {sum(events)} ({sum(events) / max(1, args.subscribers):.0f} per subscriber), "
        f"scrapes {scrapes[0]}, load-generator CPU {time.process_time() - cpu0:.1f} s"
    )
    verdict = "meets" if ratio >= FPS_RATIO_TARGET else "BELOW"
    print(f"   ratio watched/idle = {ratio:.3f}  ({verdict} the target >= {FPS_RATIO_TARGET})")


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
                await asyncio.sleep(args.warmup)
                await fps_ratio(client, info.token, args)

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
    p.add_argument("--subscribers", type=int, default=10)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=2000)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
