"""``fieldtui-agent engines list | rebuild``: the engine store from the device's shell (and the SSH path).

As ``models`` does (agent/cli/models.py): when an agent serves from the home (it holds the model
store's lock), these commands go through its API on localhost, so a rebuild calibrates on the live
source, runs as the agent's job beside the serving pipeline and activates through the health-checked
path. With no agent serving they run the same build code here: frames from ``--calibration-dir``
(else the demo scene, said in the log), and ``--activate`` makes the new version current for the next
start, as ``models activate`` does offline.

``--json`` prints EngineList (list) or EngineRebuildResult (rebuild), what the API returns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.cli.args import home_flags
from agent.core.errors import AgentError
from fieldtui.protocol import EngineList, EngineRebuildRequest, EngineRebuildResult, Job, first_error
from fieldtui.protocol.progress import JobProgress

ACTIVATION_WAIT_S = 300.0


def _request(args: argparse.Namespace) -> EngineRebuildRequest:
    fields = {
        "backend": args.backend,
        "precision": args.precision,
        "version": args.version,
        "calibration_frames": args.frames,
        "calibration_dir": str(Path(args.calibration_dir).expanduser().resolve())
        if args.calibration_dir
        else None,
        "accuracy_frames": args.accuracy_frames,
        "workspace_mb": args.workspace_mb,
        "version_compatible": args.version_compatible or None,
        "activate": args.activate,
    }
    try:
        return EngineRebuildRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        raise AgentError(f"bad rebuild option {first_error(err)}") from None


def _progress(args: argparse.Namespace) -> JobProgress:
    return JobProgress(quiet=args.json)


# --- through the serving agent ----------------------------------------------------------------------


def _online(args: argparse.Namespace, home: Any) -> EngineList | EngineRebuildResult:
    import time

    from agent.cli.models import JOB_WAIT_S, LocalAgent

    agent = LocalAgent(home)
    with agent.http:
        if args.action == "list":
            return EngineList.model_validate_json(agent.call("GET", "/v1/engines").content)
        request = _request(args)
        job = Job.model_validate_json(
            agent.call("POST", "/v1/engines/rebuild", json=request.model_dump(mode="json")).content
        )
        show = _progress(args)
        deadline = time.monotonic() + JOB_WAIT_S
        while job.state in ("queued", "running") and time.monotonic() < deadline:
            show(job.progress, job.stage)
            time.sleep(0.5)
            job = Job.model_validate_json(agent.call("GET", f"/v1/jobs/{job.id}").content)
        show.end()
        if job.state != "succeeded":
            raise AgentError(f"engine rebuild {job.state}: {job.error or 'see GET /v1/logs'}")
        result = EngineRebuildResult.model_validate(job.result)
        if result.activation_job:
            show(0.0, f"activating {result.model_version} (health check on live frames)")
            activation = agent.wait(
                Job.model_validate_json(agent.call("GET", f"/v1/jobs/{result.activation_job}").content)
            )
            show.end()
            if activation.state != "succeeded":
                raise AgentError(
                    f"{result.model_version} was built and stored but not activated: {activation.error}"
                )
        return result


# --- with no agent serving --------------------------------------------------------------------------


def _offline(args: argparse.Namespace, config: Any) -> EngineList | EngineRebuildResult:
    from agent.engines.build import check_buildable, rebuild
    from agent.engines.jobs import (
        build_options,
        configured_model,
        frames_wanted,
        resolve_source,
        store_as_version,
    )
    from agent.engines.store import EngineStore, identities

    home = config.agent_home
    engines = EngineStore(home.engines_dir)
    if args.action == "list":
        return EngineList(engines=engines.list(identities()), runtimes=identities())
    from agent.bench.frames import folder_frames, scene_frames
    from agent.core.state import StateDB
    from agent.store.catalog import ModelCatalog
    from agent.store.history import ModelHistory
    from agent.store.models import ModelStore
    from agent.store.settings import ModelSettings

    request = _request(args)
    check_buildable(request.backend, request.precision)
    store = ModelStore(home.models_dir, ModelSettings.from_section(config.sections.get("models")))
    source = resolve_source(
        store, engines, request.version, serving=store.current(), configured=configured_model(config.model)
    )
    want = frames_wanted(request)
    if request.calibration_dir:
        frames = folder_frames(request.calibration_dir, want)
        notes = [f"{len(frames)} frames from {request.calibration_dir}"]
    else:
        frames = scene_frames(want)
        notes = [
            f"{want} frames of the demo scene (no agent serving: give --calibration-dir for this camera)"
        ]
    options = build_options(request, frames, notes)
    progress = _progress(args)
    result = rebuild(engines, source, options, progress=progress)
    progress.end()
    if not request.activate:
        return result
    db = StateDB(home.state_db)
    try:
        catalog = ModelCatalog(store, ModelHistory(db), config_model=config.model, backend=config.backend)
        version = store_as_version(catalog, engines, result, source)
        catalog.activate_offline(version)
    finally:
        db.close()
    return result.model_copy(
        update={"model_version": version, "engine": engines.get(result.engine.key, identities())}
    )


def _text(result: EngineList | EngineRebuildResult) -> str:
    if isinstance(result, EngineList):
        return "\n".join(result.summary_lines("fieldtui-agent engines rebuild --precision int8"))
    return "\n".join(result.summary_lines("(current at the next start)"))


def cmd_engines(args: argparse.Namespace) -> int:
    from agent.core.config import load_config
    from agent.store.models import StoreLock

    config = load_config(home=args.home, config_file=args.config)
    home = config.agent_home.ensure()
    home.models_dir.mkdir(mode=0o700, exist_ok=True)
    lock = StoreLock(home.models_dir / ".lock")
    online = not lock.acquire(0.0)
    try:
        result = _online(args, home) if online else _offline(args, config)
    finally:
        lock.release()
    if args.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        print(_text(result))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``engines`` and its actions, on the ``fieldtui-agent`` parser."""
    p = sub.add_parser("engines", help="engines built for this device: list (stale or not), rebuild")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        home_flags(q, json="print one JSON document")
        q.set_defaults(func=cmd_engines)

    common(actions.add_parser("list", help="engines with their fingerprints; stale ones say why"))
    q = actions.add_parser("rebuild", help="build an engine (INT8 by default) from the serving model")
    q.add_argument("--backend", default=None, help="onnxruntime (default) or tensorrt")
    q.add_argument(
        "--precision", default=None, help="int8 (default), fp32 (graph-optimised), fp16 (TensorRT)"
    )
    q.add_argument("--version", default=None, help="model store version to build from (default: serving)")
    q.add_argument("--frames", type=int, default=None, help="INT8: frames to calibrate on (64)")
    q.add_argument("--calibration-dir", default=None, metavar="DIR", help="images to calibrate on")
    q.add_argument("--accuracy-frames", type=int, default=None, help="held-out frames for agreement (32)")
    q.add_argument("--workspace-mb", type=int, default=None, help="TensorRT memory pool limit")
    q.add_argument(
        "--version-compatible",
        action="store_true",
        help="TensorRT: a plan that keeps loading after a TensorRT upgrade (may run slower)",
    )
    q.add_argument("--activate", action="store_true", help="add it to the model store and activate it")
    common(q)
