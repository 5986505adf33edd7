"""``fieldtui-agent bench``: benchmark the store's current model (or ``--model``) here, without the API.

It runs the same code as ``POST /v1/benchmarks`` in model mode and writes to the same history in the
home's ``state.db``, so a run from the command line is compared with the runs made through the API.
Frames: ``--frames DIR`` (images from the camera), else the demo scene.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from pydantic import ValidationError

from agent.cli.args import home_flags
from agent.core.errors import AgentError
from fieldtui.protocol import BenchmarkRequest, BenchmarkRun, benchmark_table, first_error
from fieldtui.protocol.progress import JobProgress


def _model_path(home, flag: str | None) -> Path:
    from agent.inference.detector import demo_model_path
    from agent.store.models import ModelStore

    if flag:
        return Path(flag).expanduser()
    store = ModelStore(home.models_dir)
    version = store.current()
    if version:
        return store.model_path(version)
    if not demo_model_path().is_file():
        raise AgentError(
            f"nothing to benchmark: the store in {home.models_dir} has no current model and the embedded "
            "demo model is missing; pass --model PATH"
        )
    return demo_model_path()


def _request(args: argparse.Namespace) -> BenchmarkRequest:
    fields = {
        "backends": args.backend,
        "precisions": args.precision,
        "threads": args.threads,
        "batch_sizes": args.batch,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "mode": "cameras" if args.cameras is not None else None,
        "cameras": args.cameras,
        "camera_fps": args.camera_fps,
        "duration_s": args.duration,
    }
    try:
        return BenchmarkRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        raise AgentError(f"bad benchmark option {first_error(err)}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    from agent.bench.frames import folder_frames, scene_frames
    from agent.bench.history import BenchmarkHistory
    from agent.bench.runner import check_request, run_model_benchmarks
    from agent.core.home import AgentHome, resolve_home
    from agent.core.state import StateDB
    from agent.inference.detector import file_sha256

    request = _request(args)
    check_request(request)
    home = AgentHome(resolve_home(args.home)).ensure()
    model = _model_path(home, args.model)
    if not model.is_file():
        raise AgentError(f"model file not found: {model} (check --model)")
    want = max(16, request.accuracy_frames)
    frames = folder_frames(args.frames, want) if args.frames else scene_frames(want)

    progress = JobProgress(quiet=args.json)

    from agent.engines.store import EngineStore

    engines = EngineStore(home.engines_dir)  # INT8 etc. from engines built from this model
    if request.mode == "cameras":
        from agent.bench.cameras import run_camera_benchmark

        results = run_camera_benchmark(
            model,
            cameras=request.cameras,
            camera_fps=request.camera_fps,
            duration_s=request.duration_s,
            threads=request.threads[0],
            backend=request.backends[0],
            progress=progress,
        )
    else:
        results = run_model_benchmarks(model, request, frames, progress=progress, engines=engines)
    progress.end()
    run = BenchmarkRun(
        id=uuid.uuid4().hex,
        created=time.time(),
        device_id=home.device_id(),
        model_sha256=file_sha256(model),
        model=model.parent.name if model.parent.parent == home.models_dir else model.name,
        results=results,
    )
    db = StateDB(home.state_db)
    try:
        run = BenchmarkHistory(db).save(run)
    finally:
        db.close()
    if args.json:
        sys.stdout.write(run.model_dump_json(indent=2) + "\n")
    else:
        print("\n".join(benchmark_table(run)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark the current model here: latency, FPS, CPU, memory, heat")
    home_flags(p, config=False)
    p.add_argument("--model", default=None, help="model file (default: the store's current version)")
    p.add_argument("--backend", action="append", default=None, help="backend key; repeat for several")
    p.add_argument("--precision", action="append", default=None, help="fp32, fp16, int8; repeatable")
    p.add_argument("--threads", action="append", type=int, default=None, help="runtime threads; repeatable")
    p.add_argument("--batch", action="append", type=int, default=None, help="batch size; repeatable")
    p.add_argument("--iterations", type=int, default=None, help="timed calls per configuration (50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (5)")
    p.add_argument("--frames", default=None, metavar="DIR", help="images to run on (default: demo scene)")
    p.add_argument(
        "--cameras",
        type=int,
        default=None,
        metavar="N",
        help="N synthetic cameras on the model, batching on and off",
    )
    p.add_argument(
        "--camera-fps", type=float, default=None, help="with --cameras: FPS each camera offers (30)"
    )
    p.add_argument("--duration", type=float, default=None, help="with --cameras: seconds per row (5)")
    p.add_argument("--json", action="store_true", help="print one JSON document (BenchmarkRun)")
    p.set_defaults(func=cmd_bench)
