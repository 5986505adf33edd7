"""``fieldtui bench HOST``: run a benchmark on a device and print the table (or ``--json``).

It runs through a DeviceLink (fieldtui/link/fallback.py): over HTTP a ``POST /v1/benchmarks`` job whose progress
is shown on stderr; over SSH (``--ssh``, or the fallback) ``fieldtui-agent bench --json`` on the device
(model mode only, no progress until it ends).
"""

from __future__ import annotations

import argparse

from fieldtui.cli.jobs import request_from, run_job
from fieldtui.cli.link import link_flags
from fieldtui.protocol import BenchmarkRequest, benchmark_table
from fieldtui.protocol.argtypes import count, seconds


def _request(args: argparse.Namespace) -> BenchmarkRequest:
    fields = {
        "backends": args.backend,
        "precisions": args.precision,
        "threads": args.threads,
        "batch_sizes": args.batch,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "mode": "cameras" if args.cameras is not None and args.mode is None else args.mode,
        "duration_s": args.duration,
        "cameras": args.cameras,
        "camera_fps": args.camera_fps,
    }
    return request_from(BenchmarkRequest, "benchmark", fields)


def cmd_bench(args: argparse.Namespace) -> int:
    request = _request(args)
    return run_job(
        args,
        lambda link, progress: link.bench(request, on_progress=progress),
        lambda run: benchmark_table(run, host=args.host),
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark a device: latency, FPS, CPU, memory, heat, vs the last run")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--backend", action="append", default=None, help="backend key; repeat for several")
    p.add_argument("--precision", action="append", default=None, help="fp32, fp16, int8; repeatable")
    p.add_argument(
        "--threads", action="append", type=count(), default=None, help="runtime threads; repeatable"
    )
    p.add_argument("--batch", action="append", type=count(), default=None, help="batch size; repeatable")
    p.add_argument("--iterations", type=count(), default=None, help="timed calls per configuration (50)")
    p.add_argument("--warmup", type=count(0), default=None, help="untimed calls first (5)")
    p.add_argument(
        "--mode",
        choices=("model", "pipeline", "cameras"),
        default=None,
        help="pipeline: the live loop; cameras: N synthetic cameras on one model, batching on and off",
    )
    p.add_argument(
        "--cameras",
        type=count(1, 16),
        default=None,
        metavar="N",
        help="multi-camera benchmark with N synthetic cameras (implies --mode cameras; default 3)",
    )
    p.add_argument("--camera-fps", type=float, default=None, help="cameras mode: FPS each offers (30)")
    p.add_argument("--duration", type=seconds(), default=None, help="pipeline/cameras mode: seconds (5)")
    p.add_argument("--json", action="store_true", help="print one BenchmarkRun JSON document")
    p.add_argument("--timeout", type=seconds(), default=10.0, help="seconds per HTTP request")
    link_flags(p)
    p.set_defaults(func=cmd_bench)
