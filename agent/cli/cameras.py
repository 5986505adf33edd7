"""``fieldtui-agent cameras [--json]``: the device's cameras from its shell (and the console's SSH path).

With an agent serving from the home, its ``GET /v1/cameras`` on localhost (live state, FPS, health);
with none, the configured cameras (agent/core/cameras.py), each ``stopped``, sources redacted.
``--json`` prints one CameraList, what the API returns.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.args import home_flags
from fieldtui.protocol import CameraList, CameraStatus, SourceStatus


def offline_cameras(config) -> CameraList:  # noqa: ANN001 - AgentConfig
    from agent.frames.sources import redact

    return CameraList(
        cameras=[
            CameraStatus(
                name=spec.name,
                enabled=spec.enabled,
                state="stopped",
                source=SourceStatus(uri=redact(spec.source), kind="", up=False, reason="no agent serving"),
                conf=spec.conf,
            )
            for spec in config.camera_specs()
        ]
    )


def cmd_cameras(args: argparse.Namespace) -> int:
    from agent.cli.models import LocalAgent
    from agent.core.config import load_config

    config = load_config(home=args.home, config_file=args.config)
    home = config.agent_home
    if home.read_runtime() is not None:
        agent = LocalAgent(home)
        with agent.http:
            listing = CameraList.model_validate_json(agent.call("GET", "/v1/cameras").content)
    else:
        listing = offline_cameras(config)
    if args.json:
        sys.stdout.write(listing.model_dump_json(indent=2) + "\n")
    else:
        from fieldtui.protocol.cameras import camera_lines

        print("\n".join(camera_lines(listing)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cameras", help="this device's cameras: state, FPS, drops, health, source")
    home_flags(p, json="print one CameraList JSON document")
    p.set_defaults(func=cmd_cameras)
