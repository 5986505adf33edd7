"""``fieldtui-agent cameras [--json]`` and ``fieldtui-agent camera add|set|remove``: the device's cameras
from its shell (and the console's SSH path).

``cameras``: with an agent serving from the home, its ``GET /v1/cameras`` on localhost (live state, FPS,
health); with none, the configured cameras (agent/core/cameras.py), each ``stopped``, sources redacted.
``--json`` prints one CameraList, what the API returns.

``camera add NAME URI | set NAME ... | remove NAME`` change the serving agent's cameras through its own
``PUT/DELETE /v1/cameras/NAME`` on localhost, so they follow the very rules of the API. ``add`` never
changes a camera that exists and ``set`` never creates one. A URI of ``-`` is read from the first line
of stdin: a camera password stays out of the process list (the console's SSH path always sends it so).
``--json`` prints the CameraStatus (``remove``: the CameraList left).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli.args import home_flags
from agent.core.errors import AgentError
from fieldtui.protocol import CameraList, CameraStatus, SourceStatus
from fieldtui.protocol.cameras import (
    camera_changed_line,
    camera_refusal,
    camera_verbs,
    change_from_args,
    removed_line,
    source_problem,
)


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
        _print(listing)
    else:
        from fieldtui.protocol.cameras import camera_lines

        print("\n".join(camera_lines(listing)))
    return 0


def _serving(args: argparse.Namespace) -> Any:
    """The agent serving from the home (LocalAgent), or one line saying none is."""
    from agent.cli.models import LocalAgent
    from agent.core.config import load_config

    home = load_config(home=args.home, config_file=args.config).agent_home
    if home.read_runtime() is None:
        raise AgentError(
            f"no agent is serving from {home.root}: cameras change on the running agent; start it "
            "(`systemctl start fieldtui-agent`), or list them as [[cameras]] in its config.toml"
        )
    return LocalAgent(home)


def _source(text: str) -> str:
    """The URI as given, or stdin's first line for ``-``; refused (nothing sent) when it cannot be one."""
    import logging

    from agent.frames.sources import redact

    try:
        uri = sys.stdin.readline().strip() if text == "-" else text
    except OSError as err:  # no stdin to read (closed, or captured)
        raise AgentError(
            f"- reads the URI from stdin, which cannot be read ({err}); pipe the URI in"
        ) from None
    problem = source_problem(uri)
    if problem:
        raise AgentError(problem)
    if text != "-" and redact(uri) != uri:
        logging.getLogger("fieldtui.agent.cli").warning(
            "the source %s carries a secret every user of this device can read in the process list (ps): "
            "give - and the URI on stdin instead",
            redact(uri),
        )
    return uri


def cmd_camera(args: argparse.Namespace) -> int:
    from agent.core.cameras import check_name

    name = check_name(args.name)
    change = None
    if args.verb != "remove":
        try:
            change = change_from_args(args, _source)
        except ValueError as err:
            raise AgentError(str(err)) from None
    agent = _serving(args)
    path = f"/v1/cameras/{name}"
    with agent.http:
        if change is None:
            agent.call("DELETE", path)
            left = CameraList.model_validate_json(agent.call("GET", "/v1/cameras").content)
            if args.json:
                _print(left)
            else:
                print(removed_line(name, left))
            return 0
        listing = CameraList.model_validate_json(agent.call("GET", "/v1/cameras").content)
        refusal = camera_refusal(listing, name, add=args.verb == "add")
        if refusal:
            raise AgentError(refusal)
        body = change.model_dump(exclude_unset=True)
        camera = CameraStatus.model_validate_json(agent.call("PUT", path, json=body).content)
    if args.json:
        _print(camera)
    else:
        print(camera_changed_line(camera, "added" if args.verb == "add" else "changed"))
    return 0


def _print(model: Any) -> None:
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cameras", help="this device's cameras: state, FPS, drops, health, source")
    home_flags(p, json="print one CameraList JSON document")
    p.set_defaults(func=cmd_cameras)

    p = sub.add_parser("camera", help="add, change or remove a camera of the serving agent")
    for verb in camera_verbs(p):
        home_flags(verb, json="print the camera as JSON (remove: the cameras left)")
        verb.set_defaults(func=cmd_camera)
