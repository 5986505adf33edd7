"""``fieldtui``: the console's command line.

Each subcommand parses its flags here and calls a console service (discovery, the agent client, the
config), so scripts and the TUI run the very same code. ``--json`` prints one protocol document on
stdout; logs go to stderr; a failure is one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from fieldtui.cli.devices import print_json, resolve, resolve_device
from fieldtui.cli.link import add_parsers as add_link_parsers  # pair, logs, restart, doctor
from fieldtui.cli.link import link_flags, with_link  # HTTP, falling back to SSH; --ssh
from fieldtui.client import AgentClient, normalize_fingerprint
from fieldtui.config import ConsoleConfig, SavedDevice, device_key, parse_host
from fieldtui.errors import AgentClientError, AgentUnauthorized, AgentUnreachable, ConsoleError, UnknownDevice
from fieldtui.protocol import DeviceRecord, DeviceStatus, DiscoveryResult, ForwardResult, PipelineStatus
from fieldtui.protocol.argtypes import count, seconds
from fieldtui.protocol.files import atomic_write
from fieldtui.redact import RedactingStream

log = logging.getLogger("fieldtui")


# --- discover -------------------------------------------------------------------------------------


def _endpoint(d: DeviceRecord) -> str:
    return f"[{d.host}]:{d.port}" if ":" in d.host else f"{d.host}:{d.port}"


def prometheus_sd(result: DiscoveryResult) -> list[dict]:
    """Prometheus file_sd targets, one group per device (lost ones too: that is what `up == 0` is for)."""
    groups = []
    for d in result.devices:
        labels = {
            "device_id": d.id or "",
            "device_name": d.name,
            "model": d.model or "",
            "backend": d.backend or "",
        }
        if d.tls:
            labels["__scheme__"] = "https"
        groups.append({"targets": [_endpoint(d)], "labels": labels})
    return groups


def write_prometheus_sd(path: Path, result: DiscoveryResult) -> None:
    if not path.parent.is_dir():
        raise ConsoleError(f"cannot write {path}: directory {path.parent} does not exist")
    body = json.dumps(prometheus_sd(result), indent=2) + "\n"
    try:
        # 0644: Prometheus usually runs as its own user; the file holds no secret.
        atomic_write(path, body.encode(), mode=0o644)
    except OSError as err:
        raise ConsoleError(f"cannot write {path}: {err.strerror}") from None


def _tls_column(d: DeviceRecord) -> str:
    if not d.tls:
        return "no"
    # Only a pin from pairing or `add` counts; a fingerprint merely advertised over mDNS is not trusted.
    return "pinned" if d.tls_fingerprint and "saved" in d.origin else "yes"


def print_devices(
    result: DiscoveryResult,
    *,
    cameras: dict[str, str] | None = None,
    tags: dict[str, list[str]] | None = None,
) -> None:
    """The table; a CAMERAS column (``3 cameras, 1 unhealthy``) when a device has several, a TAGS column
    once a device has a tag."""
    cams = cameras or {}
    rows = [
        ("NAME", "ADDRESS", "ID", "MODEL", "BACKEND", "VERSION", "TLS", "STATE", "FROM", "CAMERAS", "TAGS")
    ]
    for d in result.devices:
        state = "lost" if d.lost else "online" if {"mdns", "probe"} & set(d.origin) else "saved"
        rows.append(
            (
                d.name,
                _endpoint(d),
                (d.id or "-")[:12],
                d.model or "-",
                d.backend or "-",
                d.version or "-",
                _tls_column(d),
                state,
                ",".join(d.origin),
                cams.get(device_key(d), "-"),
                ",".join((tags or {}).get(device_key(d), [])) or "-",
            )
        )
    keep = [True] * 9 + [bool(cams), any(tags.values() if tags else ())]  # optional columns only when used
    rows = [tuple(c for c, k in zip(r, keep, strict=True) if k) for r in rows]
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    else:
        print("no devices found")
    for hint in result.hints:
        print(hint, file=sys.stderr)


def cmd_discover(args: argparse.Namespace) -> int:
    from fieldtui.discovery import discover
    from fieldtui.probe import parse_ports, parse_range

    if args.timeout <= 0:
        raise ConsoleError("--timeout must be a positive number of seconds")
    if (args.port or args.force) and not args.probe:
        raise ConsoleError("--port and --force go with --probe CIDR, e.g. --probe 10.0.5.0/24 --port 9000")
    # Every range and port is checked before anything is sent: a bad one changes nothing.
    networks = [parse_range(text, force=args.force) for text in args.probe or ()]
    ports = parse_ports(args.port)
    config = ConsoleConfig()
    saved = config.load()
    result, found = asyncio.run(
        discover(
            args.timeout,
            interfaces=args.interface,
            saved=[s.device for s in saved],
            probe=networks,
            probe_ports=ports,
        )
    )
    config.refresh_seen(found)
    if args.prometheus_sd:
        write_prometheus_sd(Path(args.prometheus_sd), result)
    if args.json:
        print_json(result)
    else:
        from fieldtui.cli.cameras import discovered_cameras

        seen = config.load()  # as refresh_seen left it
        print_devices(
            result, cameras=discovered_cameras(result.devices, seen), tags={d.key: d.tags for d in seen}
        )
    return 0


# --- status ---------------------------------------------------------------------------------------


def _since(ts: float | None) -> str:
    """How long ago the epoch time ``ts`` was, as 4m05s or 2h13m."""
    if ts is None:
        return ""
    s = max(0, int(time.time() - ts))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_status(entry: SavedDevice, ds: DeviceStatus) -> list[str]:
    d, h, st = ds.device, ds.health, ds.status
    link = entry.device.api_url + (
        " (TLS, pinned)" if entry.device.tls and entry.device.tls_fingerprint else ""
    )
    lines = [
        f"{d.name}  id {d.id}  fieldtui-agent {d.version}  {d.platform} {d.machine}",
        f"api       {link}",
        f"health    {h.status}"
        + (f": {'; '.join(h.reasons)}" if h.reasons else "")
        + f"  (up {_since(time.time() - h.uptime_s)})",
    ]
    lines += [f"          {note}" for note in h.notes]  # a probation under way
    lines += _pipeline_lines(st)
    return lines


def _pipeline_lines(st: PipelineStatus) -> list[str]:
    since = f" for {_since(st.started_at)}" if st.started_at and st.state == "running" else ""
    lines = [f"pipeline  {st.state}{since}" + (f": {st.error}" if st.error else "")]
    if st.source is not None:
        src = st.source
        size = f" {src.width}x{src.height}" if src.width and src.height else ""
        up = "up" if src.up else f"down: {src.reason or 'no frames'}"
        lines.append(
            f"source    {src.uri} ({src.kind}{size}) {up}"
            + (f", {src.reconnects} reconnects" if src.reconnects else "")
        )
    if st.model is not None:
        m = st.model
        shape = "x".join(str(v) for v in m.input_shape)
        sha = f"  sha256 {m.sha256[:12]}…" if m.sha256 else ""
        lines.append(
            f"model     {m.version or Path(m.path).name}  {m.layout} on {m.backend}  {shape} {m.input_dtype}{sha}"
        )
    s = st.sample
    if s is not None:
        conf = f"{s.confidence_avg:.2f}" if s.confidence_avg is not None else "-"
        lines.append(
            f"sample    {s.fps:.1f} fps  latency p50 {s.latency_p50_ms:.1f} ms p95 {s.latency_p95_ms:.1f} ms  "
            f"confidence {conf}  drops {s.drop_rate * 100:.1f}%  frames {s.frames_total}"
        )
        if s.camera is not None:
            c = s.camera
            ratio = f"  sharpness {c.sharpness_ratio:.2f}x" if c.sharpness_ratio is not None else ""
            verdict = "ok" if c.ok else "; ".join(c.reasons) or "not ok"
            lines.append(f"camera    {verdict}  brightness {c.brightness:.0f}{ratio}")
    if st.threads is not None:
        lines.append(f"threads   {st.threads.mode}: {st.threads.reason}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    from fieldtui.cli.cameras import cameras_or_none, status_camera_lines

    async def look(link):  # noqa: ANN001, ANN202 - a DeviceLink; (DeviceStatus, CameraList | None)
        return await link.status(), None if args.json else await cameras_or_none(link)

    ds, cameras = with_link(args, look)
    if args.json:
        print_json(ds)
    else:
        print("\n".join(format_status(resolve(args.host), ds) + status_camera_lines(cameras)))
    return 0


# --- add ------------------------------------------------------------------------------------------


async def _probe(record: DeviceRecord, token: str, keep_name: bool) -> DeviceRecord:
    """Fill id, name and version from the device; a refused token or a changed pin is an error."""
    async with AgentClient.for_device(record, token, timeout=3.0) as client:
        info = await client.device()
    name = record.name if keep_name else info.name
    return record.model_copy(
        update={"id": info.id, "name": name, "version": info.version, "last_seen": time.time()}
    )


def cmd_forget(args: argparse.Namespace) -> int:
    config = ConsoleConfig()
    entry = config.remove(args.host)
    d = entry.device
    what = "its token and TLS pin are" if d.tls_fingerprint else "its token is"
    print(f"forgot {d.name} ({d.id or 'no id'}) at {d.api_url}: {what} no longer saved in {config.path}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    token = sys.stdin.readline().strip() if args.token == "-" else args.token.strip()
    if not token:
        raise ConsoleError(
            "--token is empty: pass the token `fieldtui-agent token` prints, or - to read it from stdin"
        )
    host, port, https = parse_host(args.host)
    fingerprint = None
    if args.tls_fingerprint:
        try:
            fingerprint = normalize_fingerprint(args.tls_fingerprint)
        except ValueError as err:
            raise ConsoleError(f"--tls-fingerprint: {err}") from None
    if https is False and fingerprint:
        raise ConsoleError("an http:// URL with --tls-fingerprint: use https:// or drop the fingerprint")
    record = DeviceRecord(
        name=args.name or host,
        host=host,
        port=port or 8470,
        addresses=[host],
        tls=bool(https or fingerprint),
        tls_fingerprint=fingerprint,
        origin=["manual"],
    )
    try:
        record = asyncio.run(_probe(record, token, keep_name=bool(args.name)))
    except AgentUnauthorized as err:
        raise ConsoleError(f"{record.api_url} refused this token ({err.detail}); nothing was saved") from None
    except AgentUnreachable as err:
        # Adding a device that is off right now is legitimate (preparing a site visit).
        print(f"fieldtui: warning: saved without checking: {err}", file=sys.stderr)
    except AgentClientError as err:  # a changed pin, not an agent, ...: saving would only hide it
        raise ConsoleError(f"{err}; nothing was saved") from None
    saved = ConsoleConfig().save_device(record, token)
    if args.json:
        print_json(saved.device)
    else:
        print(f"saved {saved.device.name} ({saved.device.id or 'id unknown'}) at {saved.device.api_url}")
    return 0


# --- demo -----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.plain and args.lines is None and sys.stdin.isatty() and sys.stdout.isatty():
        from screens.app import run_demo as run_demo_tui  # the TUI needs a terminal; pipes get lines

        return run_demo_tui(args.faults, cameras=args.cameras)
    from fieldtui.demo import run_demo

    async def main() -> None:
        # Ctrl-C arrives as KeyboardInterrupt (asyncio.run cancels this task); SIGTERM and a closed
        # terminal get the same orderly path, so the agent subprocess is stopped, never orphaned.
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP"):
            with suppress(AttributeError, NotImplementedError, RuntimeError):
                loop.add_signal_handler(getattr(signal, name), task.cancel)
        await run_demo(args.faults, lines=args.lines, cameras=args.cameras)

    with suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())  # run_demo says how it ended: agent stopped, or left to the other demo
    return 0


# --- trio-test ------------------------------------------------------------------------------------


def format_forward(result: ForwardResult) -> list[str]:
    """A test forward as a technician reads it: what went where, what came back, what to do."""
    where = f"{result.mode} to {result.url}" if result.url else result.mode
    took = f" in {result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
    status = f"HTTP {result.http_status}" if result.http_status else "no HTTP answer"
    lines = [f"forward   {where}: {status}{took}, {result.payload_bytes} bytes sent"]
    if result.ok:
        verdict = "TRIGGERED" if result.triggered else "not triggered"
        trio_ms = f" (Trio: {result.trio_latency_ms:.0f} ms)" if result.trio_latency_ms is not None else ""
        lines.append(f"trio      {verdict}{trio_ms}: {result.explanation or 'no explanation'}")
    elif result.error is not None:
        lines.append(f"error     {result.error.code}: {result.error.message}")
        lines.append(f"fix       {result.error.remediation}")
        if result.retry_after_s is not None:
            lines.append(f"retry     in {result.retry_after_s:.0f} s (Trio's Retry-After; forwarding waits)")
    return lines


async def run_trio_test(entry: SavedDevice, condition: str | None, timeout: float | None) -> ForwardResult:
    if not entry.token:
        raise UnknownDevice(
            f"no token is saved for {entry.device.api_url}: pair it with `fieldtui pair {entry.device.host}`"
        )
    async with AgentClient.for_device(entry.device, entry.token) as client:
        return await client.trio_test(condition, timeout)


def cmd_trio_test(args: argparse.Namespace) -> int:
    """One forward to Trio from the device now; exit 0 when Trio answered, 1 when it did not."""
    entry = resolve_device(args.host)
    try:
        result = asyncio.run(run_trio_test(entry, args.condition, args.timeout))
    except AgentClientError as err:
        raise ConsoleError(str(err)) from None
    if args.json:
        print_json(result)
    else:
        print("\n".join(format_forward(result)))
    return 0 if result.ok else 1


# --- main -----------------------------------------------------------------------------------------


def cmd_tui(args: argparse.Namespace) -> int:
    from screens.app import run  # `fieldtui` alone: the device list

    return run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldtui", description="A field technician's console for edge-AI devices."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("discover", help="list agents found over mDNS, merged with saved devices")
    p.add_argument("--json", action="store_true", help="print one DiscoveryResult JSON document")
    p.add_argument("--timeout", type=seconds(60), default=3.0, help="seconds to browse (default 3)")
    p.add_argument("--prometheus-sd", metavar="FILE", help="also write a Prometheus file_sd JSON file")
    p.add_argument(
        "--interface", action="append", metavar="IP", help="browse on this local address (repeatable)"
    )
    p.add_argument(
        "--probe",
        action="append",
        metavar="CIDR",
        help="also ask every address of this range on the agent's port, for networks that block "
        "multicast (repeatable; at most a /22 without --force)",
    )
    p.add_argument(
        "--port", action="append", metavar="N", help="probe this port too, besides 8470 (repeatable)"
    )
    p.add_argument("--force", action="store_true", help="allow a --probe range larger than a /22")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("forget", help="remove a saved device, its token and TLS pin")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("status", help="identity, health, pipeline, model and last sample of one device")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--json", action="store_true", help="print one DeviceStatus JSON document")
    p.add_argument(
        "--timeout", type=seconds(), default=5.0, help="seconds to wait for the device (default 5)"
    )
    link_flags(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("add", help="save a device by hand (pairing over SSH is the usual way)")
    p.add_argument("host", metavar="HOST", help="host, host:port or URL of the agent")
    p.add_argument("--token", required=True, help="the agent's token (- reads it from stdin)")
    p.add_argument("--name", help="a name to call it by (default: the device's own name)")
    p.add_argument("--tls-fingerprint", metavar="SHA256", help="pin this certificate (implies https)")
    p.add_argument("--json", action="store_true", help="print the saved DeviceRecord (never the token)")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("demo", help="run a local demo agent, pair it and show its live status")
    p.add_argument("--faults", action="store_true", help="inject camera faults (blur, dark, freeze, cover)")
    p.add_argument("--plain", "--no-tui", action="store_true", help="one status line a second, no TUI")
    p.add_argument(
        "--cameras",
        type=count(1, 8),
        default=1,
        metavar="N",
        help="run N synthetic cameras on the one model (2-8), the last with faults on a schedule",
    )
    p.add_argument("--lines", type=count(), default=None, help=argparse.SUPPRESS)  # tests: stop after N lines
    p.set_defaults(func=cmd_demo)

    from fieldtui.cli.models import add_parsers as add_model_parsers  # push, rollback, models, registry

    add_model_parsers(sub)
    p = sub.add_parser(
        "trio-test", help="one forward to Trio from the device now, with the answer or the fix"
    )
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--condition", metavar="TEXT", help="what Trio should judge (default: the device's)")
    p.add_argument(
        "--timeout", type=seconds(30), default=None, help="seconds the device waits for Trio (max 30)"
    )
    p.add_argument("--json", action="store_true", help="print one ForwardResult JSON document")
    p.set_defaults(func=cmd_trio_test)
    add_link_parsers(sub)
    from fieldtui.cli.bench import add_parser as add_bench_parser  # bench HOST

    add_bench_parser(sub)
    from fieldtui.cli.engines import add_parsers as add_engines_parsers  # engines HOST, rebuild HOST

    add_engines_parsers(sub)
    from fieldtui.cli.report import add_parser as add_report_parser  # report -o visit.html

    add_report_parser(sub)
    from fieldtui.cli.cameras import add_parser as add_cameras_parser  # cameras HOST

    add_cameras_parser(sub)
    from fieldtui.cli.rollout import add_parsers as add_rollout_parsers  # rollout, rollouts, tag

    add_rollout_parsers(sub)

    from fieldtui.cli.trio import add_parser as add_trio_parser  # trio HOST --endpoint/--key-file/--rules

    add_trio_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Every line this command prints, argparse's errors included, passes fieldtui/redact.py first
    # (the TUI draws on the terminal itself, not through these streams).
    out, err_stream = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err_stream)  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err_stream


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        func = cmd_tui
    try:
        return func(args)
    except ConsoleError as err:
        print(f"fieldtui: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
