"""``fieldtui cameras HOST``: a device's cameras, each with its state, FPS, drops, confidence, health and
(redacted) source, then ``3 cameras, 1 unhealthy``. ``fieldtui camera HOST add NAME URI | set NAME ... |
remove NAME``: add, change or remove one without restarting the others.

Through a DeviceLink (fieldtui/link/fallback.py): over HTTP ``GET /v1/cameras`` and ``PUT/DELETE
/v1/cameras/NAME``; over SSH (``--ssh``, or the fallback) ``fieldtui-agent cameras --json`` and
``fieldtui-agent camera add|set|remove`` on the device, the source URI on its stdin. Everything typed is
checked here before anything is sent: a bad name, URI or threshold is one line and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys

from fieldtui.cli.devices import print_json
from fieldtui.cli.link import link_flags, with_link
from fieldtui.config import SavedDevice, device_key
from fieldtui.errors import ConsoleError
from fieldtui.link.base import DeviceLink
from fieldtui.protocol import CameraList, DeviceRecord
from fieldtui.protocol.argtypes import seconds
from fieldtui.protocol.cameras import (
    CAMERA_NAME_PATTERN,
    camera_changed_line,
    camera_lines,
    camera_note,
    camera_verbs,
    change_from_args,
    removed_line,
    source_problem,
)


def cmd_cameras(args: argparse.Namespace) -> int:
    listing = with_link(args, lambda link: link.cameras())
    if args.json:
        print_json(listing)
    else:
        print("\n".join(camera_lines(listing)))
    return 0


async def cameras_or_none(link: DeviceLink) -> CameraList | None:
    """The device's cameras, or None when it cannot say (an older agent; the status says the rest)."""
    with contextlib.suppress(ConsoleError):
        return await link.cameras()
    return None


def status_camera_lines(listing: CameraList | None) -> list[str]:
    """``fieldtui status``'s lines for a device with several cameras: the summary, then each camera."""
    note = camera_note(listing)
    if listing is None or not note:
        return []
    return [f"cameras   {note}", *(f"          {line}" for line in camera_lines(listing)[1:-1])]


def discovered_cameras(
    devices: list[DeviceRecord], saved: list[SavedDevice], timeout: float = 2.0
) -> dict[str, str]:
    """``3 cameras, 1 unhealthy`` by device key, for the devices ``fieldtui discover`` saw online whose
    token is saved (the camera list is not public); devices with one camera, or not answering, have none."""
    from fieldtui.client import AgentClient

    def token(d: DeviceRecord) -> str | None:
        key = device_key(d)
        entry = next(
            (s for s in saved if s.key == key or (s.device.host, s.device.port) == (d.host, d.port)), None
        )
        return entry.token if entry is not None else None

    async def one(d: DeviceRecord, token: str) -> tuple[str, str | None]:
        with contextlib.suppress(ConsoleError):
            async with AgentClient.for_device(d, token, timeout=timeout) as client:
                return device_key(d), camera_note(await client.cameras())
        return device_key(d), None

    async def every() -> list[tuple[str, str | None]]:
        online = [d for d in devices if not d.lost and {"mdns", "probe"} & set(d.origin)]
        return await asyncio.gather(*(one(d, t) for d in online if (t := token(d))))

    return {key: note for key, note in asyncio.run(every()) if note}


def _name(text: str) -> str:
    if not re.match(CAMERA_NAME_PATTERN, text):
        shown = repr(text) if len(text) <= 64 else "given"
        raise ConsoleError(f"camera name {shown} is not valid: use 1-32 characters of a-z, 0-9 and '-'")
    return text


def _source(text: str) -> str:
    """The URI typed, or stdin's first line for ``-`` (a password then stays out of this laptop's ps)."""
    uri = sys.stdin.readline().rstrip("\r\n") if text == "-" else text
    problem = source_problem(uri)
    if problem:
        raise ConsoleError(problem)
    return uri.strip()


def cmd_camera(args: argparse.Namespace) -> int:
    name = _name(args.name)
    if args.verb == "remove":
        left = with_link(args, lambda link: link.remove_camera(name))
        if args.json:
            print_json(left)
        else:
            print(removed_line(name, left))
        return 0
    try:
        change = change_from_args(args, _source)
    except ValueError as err:
        raise ConsoleError(str(err)) from None
    camera = with_link(args, lambda link: link.change_camera(name, change, add=args.verb == "add"))
    if args.json:
        print_json(camera)
    else:
        print(camera_changed_line(camera, "added" if args.verb == "add" else "changed"))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cameras", help="a device's cameras: state, FPS, drops, confidence, health, source")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--json", action="store_true", help="print one CameraList JSON document")
    p.add_argument("--timeout", type=seconds(), default=10.0, help="seconds per HTTP request")
    link_flags(p)
    p.set_defaults(func=cmd_cameras)

    p = sub.add_parser("camera", help="add, change or remove one camera of a device (the others run on)")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    for verb in camera_verbs(p):
        verb.add_argument("--json", action="store_true", help="print the camera (remove: those left) as JSON")
        verb.add_argument("--timeout", type=seconds(), default=10.0, help="seconds per HTTP request")
        link_flags(verb)
        verb.set_defaults(func=cmd_camera)
