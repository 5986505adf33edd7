"""``fieldtui bench HOST``: run a benchmark on a device (a job), show its progress, print the table."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from fieldtui.client import AgentClient
from fieldtui.errors import AgentClientError, ConsoleError, UnknownDevice
from fieldtui.protocol import BenchmarkRequest, BenchmarkRun, benchmark_table

POLL_S = 0.3


def _request(args: argparse.Namespace) -> BenchmarkRequest:
    fields = {
        "backends": args.backend,
        "precisions": args.precision,
        "threads": args.threads,
        "batch_sizes": args.batch,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "mode": args.mode,
        "duration_s": args.duration,
    }
    try:
        return BenchmarkRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConsoleError(f"bad benchmark option {where}: {first['msg']}") from None


async def run_benchmark(
    client: AgentClient, request: BenchmarkRequest, *, show_progress: bool
) -> BenchmarkRun:
    """Submit, follow the job (progress on stderr), and return its run; cancels the job on Ctrl-C."""
    job = await client.start_benchmark(request)
    try:
        while job.state not in ("succeeded", "failed", "cancelled"):
            if show_progress:
                line = f"\r{job.progress:4.0%} {job.stage or job.state}"[:100].ljust(100)
                print(line, end="", file=sys.stderr, flush=True)
            await asyncio.sleep(POLL_S)
            job = await client.job(job.id)
    except (asyncio.CancelledError, KeyboardInterrupt):
        await client.cancel_job(job.id)
        raise
    finally:
        if show_progress:
            print(file=sys.stderr)
    if job.state != "succeeded" or job.result is None:
        raise ConsoleError(f"benchmark {job.state}: {job.error or 'no result'}")
    return BenchmarkRun.model_validate(job.result)


def cmd_bench(args: argparse.Namespace) -> int:
    from fieldtui.cli import _print_json, resolve_device

    request = _request(args)
    entry = resolve_device(args.host)
    if not entry.token:
        raise UnknownDevice(
            f"no token is saved for {entry.device.api_url}: pair it with `fieldtui pair {entry.device.host}`"
        )

    async def main() -> BenchmarkRun:
        async with AgentClient.for_device(entry.device, entry.token) as client:
            return await run_benchmark(client, request, show_progress=not args.json)

    try:
        run = asyncio.run(main())
    except AgentClientError as err:
        raise ConsoleError(str(err)) from None
    if args.json:
        _print_json(run)
    else:
        print("\n".join(benchmark_table(run)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark a device: latency, FPS, CPU, memory, heat, vs the last run")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--backend", action="append", default=None, help="backend key; repeat for several")
    p.add_argument("--precision", action="append", default=None, help="fp32, fp16, int8; repeatable")
    p.add_argument("--threads", action="append", type=int, default=None, help="runtime threads; repeatable")
    p.add_argument("--batch", action="append", type=int, default=None, help="batch size; repeatable")
    p.add_argument("--iterations", type=int, default=None, help="timed calls per configuration (50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (5)")
    p.add_argument("--mode", choices=("model", "pipeline"), default=None, help="pipeline: the live loop")
    p.add_argument("--duration", type=float, default=None, help="pipeline mode: seconds to watch (5)")
    p.add_argument("--json", action="store_true", help="print one BenchmarkRun JSON document")
    p.set_defaults(func=cmd_bench)
