"""``fieldtui cameras HOST``: a device's cameras, each with its state, FPS, drops, confidence, health and
(redacted) source, then ``3 cameras, 1 unhealthy``.

Through a DeviceLink (fieldtui/link/fallback.py): over HTTP ``GET /v1/cameras``; over SSH (``--ssh``, or
the fallback) ``fieldtui-agent cameras --json`` on the device.
"""

from __future__ import annotations

import argparse

from fieldtui.cli.devices import print_json
from fieldtui.cli.link import link_flags, with_link
from fieldtui.protocol.argtypes import seconds
from fieldtui.protocol.cameras import camera_lines


def cmd_cameras(args: argparse.Namespace) -> int:
    listing = with_link(args, lambda link: link.cameras())
    if args.json:
        print_json(listing)
    else:
        print("\n".join(camera_lines(listing)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cameras", help="a device's cameras: state, FPS, drops, confidence, health, source")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--json", action="store_true", help="print one CameraList JSON document")
    p.add_argument("--timeout", type=seconds(), default=10.0, help="seconds per HTTP request")
    link_flags(p)
    p.set_defaults(func=cmd_cameras)
