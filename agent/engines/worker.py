"""An engine build in a child process, so what it allocates leaves with the process.

INT8 calibration holds every calibration frame's activations (hundreds of MB for a few hundred frames)
and the C heap keeps most of it after it is freed: a serving agent at 190 MB stayed at 800 MB after a
rebuild in its own process. Here :func:`rebuild` (agent/engines/build.py) runs in a ``spawn``-ed child;
the frames go over as ``.npy`` files in the engine store's staging folder; progress and the result come
back over a pipe, and a cancel goes the other way (the child stops at its next check). A child that dies
leaves at most a staging folder, which is removed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import AgentError
from agent.core.jobs import JobCancelled
from agent.engines.build import BuildOptions, BuildSource
from agent.engines.store import EngineStore
from fieldtui.protocol import EngineRebuildResult

log = logging.getLogger("fieldtui.agent.engines")

CANCEL_GRACE_S = 15.0  # a cancelled child that has not stopped by then is killed


class ChildUnavailable(Exception):
    """No child process could be started: the caller builds in its own process instead."""


def _save(frames: list[np.ndarray], folder: Path, prefix: str) -> int:
    for i, frame in enumerate(frames):
        np.save(folder / f"{prefix}{i:05d}.npy", frame, allow_pickle=False)
    return len(frames)


def _load(folder: Path, prefix: str, n: int) -> list[np.ndarray]:
    return [np.load(folder / f"{prefix}{i:05d}.npy", allow_pickle=False) for i in range(n)]


def _child(
    conn: Any, root: str, source: BuildSource, options: dict[str, Any], frames: str, counts: tuple
) -> None:
    """The child's side: rebuild, reporting progress, stopping when told, sending the result or error."""
    from agent.engines.build import rebuild

    folder = Path(frames)

    def check_cancelled() -> None:
        if conn.poll() and conn.recv() == "cancel":
            raise JobCancelled()

    try:
        opts = BuildOptions(
            **options, calibration=_load(folder, "c", counts[0]), held_out=_load(folder, "h", counts[1])
        )
        result = rebuild(
            EngineStore(Path(root)),
            source,
            opts,
            check_cancelled=check_cancelled,
            progress=lambda f, s: conn.send(("progress", f, s)),
        )
        conn.send(("result", result.model_dump_json()))
    except JobCancelled:
        conn.send(("cancelled",))
    except AgentError as err:
        conn.send(("error", err.status, str(err)))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the job
        logging.getLogger("fieldtui.agent.engines").exception("engine build failed")
        conn.send(("error", 500, f"the engine build failed: {type(err).__name__}: {err}"))
    finally:
        conn.close()


def rebuild_in_child(
    store: EngineStore,
    source: BuildSource,
    options: BuildOptions,
    *,
    check_cancelled: Callable[[], None],
    progress: Callable[[float, str], None],
) -> EngineRebuildResult:
    """:func:`agent.engines.build.rebuild` in a child process; the same result, errors and cancel."""
    ctx = multiprocessing.get_context("spawn")
    store.staging.mkdir(parents=True, exist_ok=True)
    frames = Path(tempfile.mkdtemp(prefix="frames-", dir=store.staging))
    counts = (_save(list(options.calibration), frames, "c"), _save(list(options.held_out), frames, "h"))
    plain = {
        "backend": options.backend,
        "precision": options.precision,
        "workspace_mb": options.workspace_mb,
        "notes": list(options.notes),
    }
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(
        target=_child,
        args=(theirs, str(store.root), source, plain, str(frames), counts),
        name="engine-build",
        daemon=True,
    )
    try:
        proc.start()
    except (OSError, ValueError) as err:  # e.g. a host process whose file descriptors spawn cannot pass
        ours.close()
        theirs.close()
        shutil.rmtree(frames, ignore_errors=True)
        raise ChildUnavailable(f"{type(err).__name__}: {err}") from None
    theirs.close()
    cancelled_at: float | None = None
    try:
        while True:
            message = None
            if ours.poll(0.2):
                try:
                    message = ours.recv()
                except EOFError:  # the child is gone (or going): its exit code says how
                    proc.join(1.0)
            if message is not None:
                kind = message[0]
                if kind == "progress":
                    progress(message[1], message[2])
                    continue
                if kind == "result":
                    return EngineRebuildResult.model_validate_json(message[1])
                if kind == "cancelled":
                    raise JobCancelled()
                raise AgentError(message[2], status=message[1])
            if not proc.is_alive():
                raise AgentError(
                    f"the engine build process ended without a result (exit code {proc.exitcode}); "
                    "see GET /v1/logs, and try again",
                    status=500,
                )
            if cancelled_at is None:
                try:
                    check_cancelled()
                except JobCancelled:
                    cancelled_at = time.monotonic()
                    with contextlib.suppress(OSError):
                        ours.send("cancel")
            elif time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                proc.kill()
                raise JobCancelled()
    finally:
        ours.close()
        proc.join(10.0)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)
        shutil.rmtree(frames, ignore_errors=True)
        if proc.exitcode not in (0, None):
            store.clean_staging()  # what a killed child had staged
