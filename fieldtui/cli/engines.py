"""``fieldtui engines HOST`` and ``fieldtui rebuild HOST``: a device's engines, and building one.

Both run through a DeviceLink (fieldtui/link/fallback.py): over HTTP ``GET /v1/engines`` and a
``POST /v1/engines/rebuild`` job whose progress is shown on stderr (and, with ``--activate``, the
health-checked activation it starts); over SSH (``--ssh``, or the fallback) ``fieldtui-agent engines
list|rebuild --json`` on the device.
"""

from __future__ import annotations

import argparse

from fieldtui.cli.devices import print_json
from fieldtui.cli.jobs import request_from, run_job
from fieldtui.cli.link import link_flags, with_link
from fieldtui.cli.types import count, seconds
from fieldtui.protocol import EngineList, EngineRebuildRequest, EngineRebuildResult


def engine_lines(listing: EngineList) -> list[str]:
    """The list as a technician reads it: one line per engine (stale ones say why), then the runtimes."""
    lines = [f"{'engine':<36} {'size':>9}  {'p50 ms':>8} {'fp32 ms':>8} {'F1':>6}  state"]
    for e in listing.engines:
        state = f"STALE: {e.stale_reason}" if e.stale else "ok"
        if e.model_version and not e.stale:
            state += f" (model {e.model_version})"
        p50 = f"{e.p50_ms:.2f}" if e.p50_ms is not None else "-"
        fp32 = f"{e.fp32_p50_ms:.2f}" if e.fp32_p50_ms is not None else "-"
        f1 = f"{e.agreement_f1:.3f}" if e.agreement_f1 is not None else "-"
        lines.append(f"{e.key:<36} {e.size / 1e6:>7.2f}MB  {p50:>8} {fp32:>8} {f1:>6}  {state}")
    if not listing.engines:
        lines.append("no engines yet: `fieldtui rebuild HOST --precision int8` builds one")
    for r in listing.runtimes:
        build = "can build" if r.can_build else f"cannot build: {r.build_note or r.reason}"
        lines.append(f"runtime {r.runtime:<12} {r.runtime_version or '-':<10} {build}")
    return lines


def result_lines(r: EngineRebuildResult) -> list[str]:
    speed = "not measured"
    if r.p50_ms is not None:
        speed = f"p50 {r.p50_ms:.2f} ms vs FP32 {r.fp32_p50_ms:.2f} ms (x{r.speedup})"
    lines = [
        f"built {r.engine.key}: {r.size / 1e6:.2f} MB (source {r.source_size / 1e6:.2f} MB) in {r.elapsed_s:.1f} s",
        f"{speed}; agreement F1 {r.agreement_f1} on {r.agreement_frames} held-out frames",
    ]
    if r.model_version:
        lines.append(
            f"stored as model version {r.model_version}" + (" and activated" if r.activation_job else "")
        )
    return lines


def cmd_engines(args: argparse.Namespace) -> int:
    listing = with_link(args, lambda link: link.engines())
    if args.json:
        print_json(listing)
    else:
        print("\n".join(engine_lines(listing)))
    return 0


def _request(args: argparse.Namespace) -> EngineRebuildRequest:
    fields = {
        "backend": args.backend,
        "precision": args.precision,
        "version": args.version,
        "calibration_frames": args.frames,
        "calibration_dir": args.calibration_dir,
        "accuracy_frames": args.accuracy_frames,
        "activate": args.activate,
        "version_compatible": args.version_compatible or None,
    }
    return request_from(EngineRebuildRequest, "rebuild", fields)


def cmd_rebuild(args: argparse.Namespace) -> int:
    request = _request(args)
    return run_job(args, lambda link, progress: link.rebuild(request, on_progress=progress), result_lines)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engines", help="a device's engines: fingerprints, which are stale and why")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--json", action="store_true", help="print one EngineList JSON document")
    p.add_argument("--timeout", type=seconds(), default=10.0, help="seconds per HTTP request")
    link_flags(p)
    p.set_defaults(func=cmd_engines)

    p = sub.add_parser(
        "rebuild", help="build an engine on a device (INT8 by default), optionally activate it"
    )
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--backend", default=None, help="onnxruntime (default) or tensorrt")
    p.add_argument("--precision", default=None, help="int8 (default), fp32, fp16 (TensorRT)")
    p.add_argument("--version", default=None, help="model store version to build from (default: serving)")
    p.add_argument("--frames", type=count(), default=None, help="INT8: frames to calibrate on (64)")
    p.add_argument("--calibration-dir", default=None, metavar="DIR", help="a folder of images on the device")
    p.add_argument("--accuracy-frames", type=count(), default=None, help="held-out frames for agreement (32)")
    p.add_argument(
        "--version-compatible",
        action="store_true",
        help="TensorRT: a plan that keeps loading after a TensorRT upgrade (may run slower)",
    )
    p.add_argument("--activate", action="store_true", help="add it to the model store and activate it")
    p.add_argument("--json", action="store_true", help="print one EngineRebuildResult JSON document")
    p.add_argument("--timeout", type=seconds(), default=10.0, help="seconds per HTTP request")
    link_flags(p)
    p.set_defaults(func=cmd_rebuild)
