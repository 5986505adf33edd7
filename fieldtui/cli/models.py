"""``fieldtui push | rollback | models | registry ...``: the model store from the console's command line.

Registered by fieldtui/cli/main.py (:func:`add_parsers`); each command calls a console service
(fieldtui/push.py, the AgentClient, fieldtui/registry.py), as the TUI does. ``push`` and ``rollback``
run through a DeviceLink (fieldtui/link/fallback.py): HTTP, falling back to SSH, or SSH only with ``--ssh``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import TextIO

from fieldtui.cli.devices import print_json, resolve_device
from fieldtui.cli.link import link_flags, with_link
from fieldtui.client import AgentClient
from fieldtui.errors import ConsoleError, UnknownDevice
from fieldtui.protocol import Job
from fieldtui.protocol.argtypes import count, fraction, port, seconds
from fieldtui.protocol.progress import StatusLine
from fieldtui.push import PushProgress


def _client(host: str, timeout: float) -> AgentClient:
    entry = resolve_device(host)
    if not entry.token:
        raise UnknownDevice(
            f"no token is saved for {entry.device.api_url}: pair it with `fieldtui pair {entry.device.host}` "
            f"(over SSH) or `fieldtui add {entry.device.host} --token T`"
        )
    return AgentClient.for_device(entry.device, entry.token, timeout=timeout)


class ProgressLine(StatusLine):
    """Push progress on stderr: one line rewritten in place on a terminal, a line per quarter otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._started: dict[str, float] = {}

    def __call__(self, p: PushProgress) -> None:
        if p.phase in ("hashing", "uploading"):
            start = self._started.setdefault(p.phase, time.monotonic())
            pct = p.done * 100 // max(p.total, 1)
            rate = p.done / 1e6 / max(time.monotonic() - start, 1e-6)
            text = f"{p.phase:<9} {pct:3d}%  {p.done / 1e6:8.1f} / {p.total / 1e6:.1f} MB  {rate:6.1f} MB/s"
            self.show(text, (p.phase, pct // 25))
        else:
            self.end()
            line = (
                f"uploaded{f' by {p.stage}' if p.stage else ''}; the device is checking the model"
                if p.phase == "verifying"
                else f"{p.phase}: {p.stage or 'queued'}"
            )
            self.say(line)


def _activation_line(job: Job, version: str) -> str:
    result = job.result or {}
    if result.get("outcome") == "unchanged":
        return result.get("message", f"{version} already serves")
    if result.get("outcome") == "probation":
        return f"{version} serves now, on probation (`fieldtui models HOST` shows the verdict)"
    return f"{version} serves now"


def cmd_push(args: argparse.Namespace) -> int:
    progress = ProgressLine()

    try:
        result = with_link(
            args,
            lambda link: link.push(
                Path(args.file),
                args.version,
                activate=args.activate,
                on_progress=None if args.quiet else progress,
                force=args.force,
            ),
        )
    finally:
        progress.end()
    if args.json:
        print_json(result)
    else:
        m = result.version.manifest
        verb = "stored" if result.uploaded else "already on the device (same sha256), not sent again:"
        print(
            f"{verb} {m.version}  {m.size / 1e6:.1f} MB  sha256 {m.sha256[:12]}…  {m.layout} {m.input_shape}"
        )
    job = result.activation
    if job is not None:
        if job.state != "succeeded":
            raise ConsoleError(
                f"activation of {args.version} {job.state}: {job.error or 'see `fieldtui models`'}"
            )
        if not args.json:
            print(_activation_line(job, args.version))
    return 0


def _version(text: str) -> str:
    """A version named on the command line; the device judges the name, but one starting with - would
    reach the agent's command line over SSH as an option, so it stops here."""
    if text.startswith("-"):
        raise ConsoleError(f"{text[:80]!r} is not a version name: it starts with a letter or digit")
    return text


def cmd_activate(args: argparse.Namespace) -> int:
    _version(args.version)
    job = with_link(args, lambda link: link.activate(args.version, force=args.force))
    if args.json:
        print_json(job)
    if job.state != "succeeded":
        raise ConsoleError(
            f"activation of {args.version} {job.state}: {job.error or 'see `fieldtui models`'}"
        )
    if not args.json:
        print(_activation_line(job, args.version))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    job = with_link(args, lambda link: link.rollback())
    if args.json:
        print_json(job)
    if job.state != "succeeded":
        raise ConsoleError(f"rollback {job.state}: {job.error or 'see `fieldtui models`'}")
    if not args.json:
        result = job.result or {}
        print(
            f"rolled back to {result.get('version') or 'the configured model'} (was {result.get('previous') or '?'})"
        )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _version(args.version)
    listing = with_link(args, lambda link: link.remove(args.version))
    if args.json:
        print_json(listing)
    else:
        print(f"deleted {args.version}; {len(listing.versions)} version(s) left on the device")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    async def run():
        async with _client(args.host, args.timeout) as client:
            return await client.models()

    listing = asyncio.run(run())
    if args.json:
        print_json(listing)
    else:
        print("\n".join(listing.summary_lines(history=args.history)))
    return 0


def _signer(args: argparse.Namespace):
    """The OfferSigner of ``--sign KEY``, or None."""
    if not args.sign:
        return None
    from fieldtui.registry_signing import OfferSigner

    return OfferSigner(Path(args.sign))


def cmd_registry_serve(args: argparse.Namespace) -> int:
    from fieldtui.registry import serve

    signer = _signer(args)

    def ready(port: int) -> None:
        host = args.host if args.host not in ("0.0.0.0", "") else "THIS-LAPTOP-IP"
        print(f"serving models from {args.dir} on port {port}", file=sys.stderr)
        print(
            f'devices: [models] registry = "http://{host}:{port}" in the agent\'s config.toml',
            file=sys.stderr,
        )
        if signer is not None:
            print(
                f"offers signed by key {signer.fingerprint}: "
                f'registry_key = "{signer.public_b64}" in the same [models] table',
                file=sys.stderr,
            )
        else:
            print("offers are unsigned (--sign KEY signs them)", file=sys.stderr)

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP"):
            with suppress(AttributeError, NotImplementedError, RuntimeError):
                loop.add_signal_handler(getattr(signal, name), task.cancel)  # type: ignore[union-attr]
        await serve(Path(args.dir), args.host, args.port, on_ready=ready, signer=signer)

    with suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())
    return 0


def cmd_registry_rollout(args: argparse.Namespace) -> int:
    from fieldtui.registry import ModelFolder

    if args.watch is None:
        if args.step is not None:
            raise ConsoleError("--step goes with --watch PROMETHEUS_URL; alone, use --percent P")
        print(ModelFolder(args.dir).set_rollout(args.version, args.percent, args.id))
        return 0
    from fieldtui.registry_watch import Prometheus, RolloutWatch, parse_steps

    if args.step is None:
        raise ConsoleError("--watch needs --step, the percents to go through, e.g. --step 5,25,100")
    steps = parse_steps(args.step)
    folder, prometheus = ModelFolder(args.dir), Prometheus(args.watch)
    try:
        return RolloutWatch(
            folder,
            args.version,
            steps,
            prometheus,
            max_failure_rate=args.max_failure_rate,
            interval=args.interval,
            soak=args.soak,
            rollout_id=args.id,
            say=lambda line: print(line, flush=True),
        ).run()
    except KeyboardInterrupt:
        staged = folder.rollout()
        where = f"stays at {staged[1].percent:g}%" if staged and staged[0] == args.version else "is unchanged"
        print(f"watch stopped; the rollout of {args.version} {where}", file=sys.stderr)
        return 130


def cmd_registry_offer(args: argparse.Namespace) -> int:
    from fieldtui.registry import ModelFolder

    offer = ModelFolder(args.dir, _signer(args)).offer(args.device)
    if offer is None:
        raise ConsoleError(f"no model to offer in {args.dir}; put model files named by version in it")
    print(offer.model_dump_json(exclude_none=True, indent=2))
    return 0


def cmd_registry_keygen(args: argparse.Namespace) -> int:
    from fieldtui.registry_signing import OfferSigner, keygen

    private, public = keygen(Path(args.out))
    print(f"signing key  {private} (keep it secret; `fieldtui registry serve DIR --sign {private}`)")
    print(f"public key   {public} (key {OfferSigner(private).fingerprint})")
    print(f'devices: [models] registry_key = "{public.read_text().strip()}" (or the path of {public.name})')
    return 0


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percent; use a number from 0 to 100") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range; use 0 to 100")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The model store's subcommands, on the ``fieldtui`` parser."""
    p = sub.add_parser(
        "push", help="send a model to a device (hashed first, streamed), optionally activate it"
    )
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument(
        "file", metavar="FILE", help="model file: .onnx (.engine, .hef, .tflite for their backends)"
    )
    p.add_argument("--version", required=True, help="version name on the device, like v7 or 2024.06.1")
    p.add_argument(
        "--activate", action="store_true", help="activate it once stored (health check, probation)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="store (and activate) it although the same bytes or version failed or were rolled back before",
    )
    p.add_argument("--json", action="store_true", help="print one PushResult JSON document")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--timeout", type=seconds(), default=10.0, help="seconds to wait for the device to answer")
    link_flags(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("activate", help="switch a device to a stored model version (health check, probation)")
    p.add_argument("host", metavar="HOST")
    p.add_argument("version", metavar="VERSION")
    p.add_argument(
        "--force", action="store_true", help="also a version that failed or was rolled back before"
    )
    p.add_argument("--json", action="store_true", help="print the finished Job")
    p.add_argument("--timeout", type=seconds(), default=10.0)
    p.add_argument("--job-timeout", type=seconds(), default=120.0, help="seconds to wait for the activation")
    link_flags(p)
    p.set_defaults(func=cmd_activate)

    p = sub.add_parser("rollback", help="go back to the device's last good model version")
    p.add_argument("host", metavar="HOST")
    p.add_argument("--json", action="store_true", help="print the finished Job")
    p.add_argument("--timeout", type=seconds(), default=10.0)
    p.add_argument("--job-timeout", type=seconds(), default=120.0, help="seconds to wait for the rollback")
    link_flags(p)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("delete", help="delete a stored model version from a device (never the serving one)")
    p.add_argument("host", metavar="HOST")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--json", action="store_true", help="print the ModelList left")
    p.add_argument("--timeout", type=seconds(), default=10.0)
    link_flags(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser(
        "models", help="model versions on a device, which serves, and the history with reasons"
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--json", action="store_true", help="print one ModelList JSON document")
    p.add_argument("--history", type=count(0), default=8, help="history rows to show (default 8)")
    p.add_argument("--timeout", type=seconds(), default=10.0)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("registry", help="serve a folder of models to devices in pull mode; rollouts, signing")
    reg = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    s = reg.add_parser("serve", help="serve DIR: GET /latest?device_id=ID and the model files")
    s.add_argument("dir", metavar="DIR", help="folder of model files named by version (v7.onnx, ...)")
    s.add_argument("--port", type=port(0), default=8471, help="port to listen on (default 8471; 0 picks one)")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    s.add_argument(
        "--sign",
        metavar="KEY",
        help="sign every offer with this private key (from `fieldtui registry keygen`)",
    )
    s.set_defaults(func=cmd_registry_serve)

    s = reg.add_parser(
        "rollout",
        help="offer a version to a share of the devices first (a staged rollout); --percent 100 ends it",
    )
    s.add_argument("dir", metavar="DIR", help="the registry's folder of models")
    s.add_argument("--version", required=True, help="the version to roll out (a model file in DIR)")
    how = s.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--percent",
        type=_percent,
        help="share of devices that take it (raising it only adds devices; 0 stops new ones; 100 ends it)",
    )
    how.add_argument(
        "--watch",
        metavar="PROMETHEUS_URL",
        help="go through --step while the cohort's failure rate, read from this Prometheus, stays at or "
        "under --max-failure-rate; above it, set the percent back to 0",
    )
    s.add_argument(
        "--step", metavar="P,P,...", help="with --watch: the percents to go through, e.g. 5,25,100"
    )
    s.add_argument(
        "--max-failure-rate",
        type=fraction,
        default=0.1,
        help="with --watch: failed activations + rolled-back probations over decided devices (default 0.1)",
    )
    s.add_argument(
        "--soak", type=seconds(), default=600.0, help="with --watch: seconds to watch each step (default 600)"
    )
    s.add_argument(
        "--interval", type=seconds(), default=15.0, help="with --watch: seconds between queries (default 15)"
    )
    s.add_argument(
        "--id", help="rollout id (default: kept from the rollout of this version, else the version)"
    )
    s.set_defaults(func=cmd_registry_rollout)

    s = reg.add_parser(
        "offer",
        help="print the offer `serve` would answer, for a static web server, object store or CDN "
        "(save it as `latest` beside a models/ folder holding the files)",
    )
    s.add_argument("dir", metavar="DIR", help="the registry's folder of models")
    s.add_argument(
        "--sign", metavar="KEY", help="sign it with this private key (from `fieldtui registry keygen`)"
    )
    s.add_argument("--device", metavar="ID", help="the offer for this device id (its pin in DIR/devices/)")
    s.set_defaults(func=cmd_registry_offer)

    s = reg.add_parser("keygen", help="make an Ed25519 key pair to sign the registry's offers")
    s.add_argument("--out", default=".", metavar="DIR", help="folder for the two key files (default: here)")
    s.set_defaults(func=cmd_registry_keygen)
