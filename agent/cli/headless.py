"""``fieldtui-agent run``: the frame path without the control plane, one status line a second.

What a technician runs over SSH to see a device work (or not) without the console::

    fps 29.8  p50 12.1 ms  p95 15.0 ms  conf 0.82  drops 0.3%  camera ok  det circle:3 square:1

``--json`` prints one :class:`~fieldtui.protocol.PipelineStatus` per line instead. ``--metrics-port``
serves Prometheus ``/metrics``. Stops on SIGINT/SIGTERM, after ``--duration``, or at the end of a file.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from agent.core.errors import AgentError
from fieldtui.protocol import PipelineStatus

log = logging.getLogger("fieldtui.agent.run")


def format_status(status: PipelineStatus) -> str:
    """The one-line text form of a status (what ``run`` prints each second)."""
    s = status.sample
    src = status.source
    # While no frame arrives, the last health measured describes a picture that is gone: say so instead.
    no_frames = s is not None and (
        s.fps <= 0 or status.state in ("reconnecting", "failed") or (src is not None and not src.up)
    )
    parts: list[str] = []
    if s is not None:
        conf = f"{s.confidence_avg:.2f}" if s.confidence_avg is not None else "-"
        parts += [
            f"fps {s.fps:.1f}",
            f"p50 {s.latency_p50_ms:.1f} ms",
            f"p95 {s.latency_p95_ms:.1f} ms",
            f"conf {conf}",
            f"drops {100 * s.drop_rate:.1f}%",
        ]
        cam = s.camera
        if no_frames:
            parts.append("camera no frames")
        elif cam is None:
            parts.append("camera -")
        elif cam.ok:
            parts.append("camera ok")
        else:
            parts.append("camera CHECK")
        det = " ".join(f"{name}:{n}" for name, n in sorted(s.detections.items()))
        parts.append(f"det {det}" if det else "det -")
    line = "  ".join(parts)
    if status.state != "running" or (src is not None and not src.up):
        why = (src.reason if src is not None else None) or status.error
        line += f"  [{status.state}: {why}]" if why else f"  [{status.state}]"
    if s is not None and not no_frames and s.camera is not None and not s.camera.ok:
        line += "  camera: " + "; ".join(s.camera.reasons)
    return line


def _serve_metrics(registry, host: str, port: int):
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        raise AgentError(
            f"cannot serve metrics on {host}:{port} ({err.strerror or err}): pick a free port with --metrics-port"
        ) from None
    log.info("Prometheus metrics on http://%s:%d/metrics", host, server.server_port)
    return server


def run_headless(
    model: str | Path | None = None,
    source: str = "demo:",
    backend: str = "onnxruntime",
    metrics_port: int | None = None,
    duration: float | None = None,
    as_fast_as_possible: bool = False,
    json_lines: bool = False,
    *,
    metrics_host: str = "0.0.0.0",
    out: TextIO | None = None,
    threads: int | None = None,
) -> int:
    """Run the loop until a signal, ``duration`` seconds, or the end of a file; 0 on a clean stop.

    Bad input (model, source, port) raises an AgentError before anything runs; the CLI prints it as
    one line. A stream lost later is reconnected, never fatal.
    """
    from agent.frames.metrics import AgentMetrics
    from agent.frames.pipeline import Pipeline
    from agent.inference.detector import Detector

    out = out or sys.stdout
    stop = threading.Event()
    detector = Detector.load(model, backend=backend)
    server = pipeline = None
    restore: list[tuple[int, object]] = []
    try:
        metrics = AgentMetrics()
        pipeline = Pipeline(detector, source, metrics=metrics, fast=as_fast_as_possible, threads=threads)
        if metrics_port is not None:
            server = _serve_metrics(metrics.registry, metrics_host, metrics_port)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore.append((sig, signal.signal(sig, lambda *_: stop.set())))
        pipeline.start()
        started = time.monotonic()
        end = started + duration if duration is not None else float("inf")
        next_line = started + 1.0
        while not stop.wait(max(0.0, min(0.1, end - time.monotonic()))):
            now = time.monotonic()
            ended = pipeline.wait_finished(0)
            if now >= next_line or now >= end or ended:
                next_line = max(next_line + 1.0, now + 0.5)
                status = pipeline.status()
                out.write((status.model_dump_json() if json_lines else format_status(status)) + "\n")
                out.flush()
            if ended or now >= end:
                break
        return 0
    finally:
        for sig, handler in restore:
            signal.signal(sig, handler)
        if pipeline is not None:
            pipeline.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        detector.close()
