"""Cameras of a multi-camera agent: ``GET /v1/cameras``, ``GET/PUT/DELETE /v1/cameras/{name}``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pydantic import ConfigDict, Field

from fieldtui.protocol.argtypes import fraction
from fieldtui.protocol.core import Model, PipelineState, Sample, SourceStatus

CAMERA_NAME_PATTERN = r"^[a-z0-9-]{1,32}$"


class CameraStatus(Model):
    """One camera: its source (redacted), whether it runs, its last window of figures and health."""

    name: str
    enabled: bool
    state: PipelineState
    source: SourceStatus
    conf: float | None = Field(
        default=None, description="this camera's confidence threshold; None: the model's"
    )
    sample: Sample | None = None
    error: str | None = None


class CameraList(Model):
    cameras: list[CameraStatus]
    batch: int = Field(default=1, description="frames one inference call may carry (1: cameras take turns)")
    batching: str | None = Field(default=None, description="how the cameras share the model, one line")


class CameraChange(Model):
    """``PUT /v1/cameras/{name}``: add the camera, or change it. Keys left out keep their value (for a
    new camera ``source`` is required)."""

    model_config = ConfigDict(strict=True)  # a request: 0 is not false, "0.5" is not 0.5

    source: str | None = Field(default=None, min_length=1)
    conf: float | None = Field(default=None, ge=0.0, le=1.0)
    enabled: bool | None = None


def camera_summary(listing: CameraList) -> str:
    """``3 cameras, 1 unhealthy``: unhealthy = enabled and not delivering, or failing a health check."""
    bad = sum(1 for c in listing.cameras if c.enabled and not _healthy(c))
    n = len(listing.cameras)
    return f"{n} camera{'s' * (n != 1)}" + (f", {bad} unhealthy" if bad else "")


def camera_verdict(c: CameraStatus, sample: Sample | None = None) -> str:
    """One word for a camera: ``off`` (disabled), ``down`` (not delivering), ``check`` (failing a
    health check), ``starting`` or ``ok``; ``sample`` is a newer one than the listing's, if any."""
    if not c.enabled:
        return "off"
    if c.state in ("failed", "reconnecting") or (not c.source.up and c.state != "starting"):
        return "down"
    s = sample or c.sample
    if s is not None and s.camera is not None and not s.camera.ok:
        return "check"
    return "starting" if c.state in ("starting", "stopped") else "ok"


def camera_note(listing: CameraList | None) -> str | None:
    """``3 cameras, 1 unhealthy`` for a device with several cameras; None for one (or an older agent)."""
    return camera_summary(listing) if listing is not None and len(listing.cameras) > 1 else None


def _healthy(c: CameraStatus) -> bool:
    health = c.sample.camera if c.sample is not None else None
    return c.source.up and c.state == "running" and (health is None or health.ok)


def camera_lines(listing: CameraList) -> list[str]:
    """The list as a technician reads it (the agent's and the console's CLI print the same lines)."""
    lines = [f"{'camera':<16} {'state':<12} {'fps':>6} {'drop':>6} {'conf':>6}  health / source"]
    for c in listing.cameras:
        s = c.sample
        fps = f"{s.fps:.1f}" if s is not None else "-"
        drop = f"{s.drop_rate:.0%}" if s is not None else "-"
        conf = f"{s.confidence_avg:.2f}" if s is not None and s.confidence_avg is not None else "-"
        health = s.camera if s is not None else None
        if not c.enabled:
            note = "disabled"
        elif not c.source.up:
            note = f"DOWN: {c.source.reason or 'no frames'}"
        elif health is not None and not health.ok:
            note = "CHECK: " + "; ".join(health.reasons)
        else:
            note = "ok"
        lines.append(f"{c.name:<16} {c.state:<12} {fps:>6} {drop:>6} {conf:>6}  {note}  [{c.source.uri}]")
    if listing.batching:
        lines.append(f"{camera_summary(listing)}; {listing.batching}")
    else:
        lines.append(
            camera_summary(listing) + (f"; batch up to {listing.batch}" if listing.batch > 1 else "")
        )
    return lines


def camera_refusal(listing: CameraList, name: str, *, add: bool) -> str | None:
    """Why ``camera add`` (``add``) or ``camera set`` must not PUT ``name``, or None: ``add`` never
    changes a camera that exists, ``set`` never creates one (a PUT alone would do either)."""
    names = [c.name for c in listing.cameras]
    if add and name in names:
        return f"camera {name!r} already exists: change it with `camera set {name} ...` (nothing was changed)"
    if not add and name not in names:
        return (
            f"no camera named {name!r} on this device (it has {', '.join(names) or 'none'}): "
            f"add it with `camera add {name} URI` (nothing was changed)"
        )
    return None


def camera_changed_line(camera: CameraStatus, verb: str) -> str:
    """``added camera gate: starting, conf 0.40, source rtsp://***@10.0.0.9/live`` (source redacted)."""
    state = camera.state if camera.enabled else "disabled"
    conf = f", conf {camera.conf:.2f}" if camera.conf is not None else ""
    return f"{verb} camera {camera.name}: {state}{conf}, source {camera.source.uri}"


def source_problem(uri: str) -> str | None:
    """Why a source URI typed for ``camera add|set`` is refused before anything is sent, or None.
    Never repeats the URI: it may carry a password."""
    if not uri.strip():
        return "the source URI is empty: give one (demo:, rtsp://..., a file path, usb:N)"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        return "the source URI contains a control character (a line break?): give it on one line"
    if len(uri) > 4096:
        return "the source URI is longer than 4096 characters: check what was pasted"
    return None


def removed_line(name: str, left: CameraList) -> str:
    n = len(left.cameras)
    return (
        f"removed camera {name}; {n} camera{'s' * (n != 1)} left: {', '.join(c.name for c in left.cameras)}"
    )


# --- ``camera add|set|remove``: the same words in ``fieldtui camera HOST`` and ``fieldtui-agent camera`` ---

CONF_HELP = "this camera's confidence threshold, 0 to 1 (default: the model's)"


def conf_or_default(text: str) -> float | str:
    """``--conf``: a threshold from 0 to 1, or ``default`` for the model's own."""
    return "default" if text == "default" else fraction(text)


def camera_verbs(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``add NAME URI``, ``set NAME ...`` and ``remove NAME`` under ``p``; each verb's parser, for the
    flags of the command that owns them."""
    verbs = p.add_subparsers(dest="verb", required=True, metavar="add|set|remove")
    add = verbs.add_parser("add", help="add a camera: it starts at once, the others run on")
    add.add_argument("name", metavar="NAME", help="a-z, 0-9 and '-', at most 32")
    add.add_argument(
        "uri", metavar="URI", help="its source; - reads it from stdin (keeps a password out of ps)"
    )
    add.add_argument("--conf", type=conf_or_default, default=None, help=CONF_HELP)
    add.add_argument("--disabled", action="store_true", help="configure it, but do not capture yet")
    change = verbs.add_parser("set", help="change a camera's source or threshold, enable or disable it")
    change.add_argument("name", metavar="NAME")
    change.add_argument("--source", metavar="URI", help="a new source (- reads it from stdin)")
    change.add_argument(
        "--conf", type=conf_or_default, default=None, help=CONF_HELP + "; default: the model's"
    )
    onoff = change.add_mutually_exclusive_group()
    onoff.add_argument("--enable", dest="enabled", action="store_const", const=True, default=None)
    onoff.add_argument("--disable", dest="enabled", action="store_const", const=False)
    remove = verbs.add_parser("remove", help="remove a camera (not the last one); the others run on")
    remove.add_argument("name", metavar="NAME")
    return [add, change, remove]


def change_from_args(args: argparse.Namespace, source: Callable[[str], str]) -> CameraChange:
    """The CameraChange ``camera add|set`` asks for; ``source`` turns the URI argument (``-``: stdin)
    into the URI. ValueError with the line to print when there is nothing to change."""
    change: dict = {}
    if args.verb == "add":
        change["source"] = source(args.uri)
        if args.disabled:
            change["enabled"] = False
    else:
        if args.source is not None:
            change["source"] = source(args.source)
        if args.enabled is not None:
            change["enabled"] = args.enabled
        if args.conf is None and not change:
            raise ValueError("nothing to change: give --source URI, --conf X, --enable or --disable")
    if args.conf is not None:
        change["conf"] = None if args.conf == "default" else args.conf
    return CameraChange.model_validate(change)
