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
from fieldtui.protocol import EngineRebuildRequest, EngineRebuildResult
from fieldtui.protocol.argtypes import count, seconds


def cmd_engines(args: argparse.Namespace) -> int:
    listing = with_link(args, lambda link: link.engines())
    if args.json:
        print_json(listing)
    else:
        print("\n".join(listing.summary_lines("fieldtui rebuild HOST --precision int8")))
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
    return run_job(
        args,
        lambda link, progress: link.rebuild(request, on_progress=progress),
        EngineRebuildResult.summary_lines,
    )


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
