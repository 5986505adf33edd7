"""``fieldtui pair | logs | restart | doctor``, and what ``status``, ``push`` and ``rollback`` share with them:
:func:`with_link` runs an operation through a :class:`~fieldtui.link.fallback.DeviceLink` (HTTP first, SSH when HTTP
cannot get through, the reason on stderr; SSH only with ``--ssh``), :func:`link_flags` adds ``--ssh`` and
``--accept-new``. Registered by fieldtui/cli/main.py (:func:`add_parsers`); ``bench`` (fieldtui/cli/bench.py)
uses them too.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

from fieldtui.cli.devices import print_json, resolve
from fieldtui.client import AgentClient
from fieldtui.config import ConsoleConfig, check_host
from fieldtui.errors import AgentUnreachable, ConsoleError, UnknownDevice
from fieldtui.link.fallback import DeviceLink, open_link
from fieldtui.protocol import CameraChange, CameraStatus, LogLine, PipelineStatus, SSHEndpoint
from fieldtui.protocol.argtypes import count, port, seconds

T = TypeVar("T")
KEEP_GAP = 500  # lines read back after the event stream reconnects


def with_link(args: argparse.Namespace, op: Callable[[DeviceLink], Awaitable[T]]) -> T:
    entry = resolve(args.host)

    async def run() -> T:
        async with open_link(
            entry,
            ssh=args.ssh,
            accept_new=args.accept_new,
            timeout=getattr(args, "timeout", 10.0),
            job_timeout=getattr(args, "job_timeout", 120.0),
        ) as link:
            return await op(link)

    return asyncio.run(run())


def cmd_pair(args: argparse.Namespace) -> int:
    from fieldtui.pair import pair_over_ssh

    endpoint = SSHEndpoint(
        host=check_host(args.host),
        port=args.ssh_port,
        user=args.ssh_user,
        agent_home=args.agent_home,
        sudo=args.sudo,
    )
    record, token = asyncio.run(pair_over_ssh(endpoint, accept_new=args.accept_new, name=args.name))
    config = ConsoleConfig()
    saved = config.save_device(record, token)
    if args.json:
        print_json(saved.device)
    else:
        pin = f", TLS pinned to {record.tls_fingerprint[:16]}…" if record.tls_fingerprint else ""
        print(f"paired {record.name} ({record.id}) at {record.api_url}{pin}; token saved in {config.path}")
        if record.ssh is not None and record.ssh.sudo:
            print(
                "the agent home is not readable by the SSH user: agent commands over SSH run with `sudo -n`"
            )
    return 0


def _client(args: argparse.Namespace) -> AgentClient:
    """An HTTP client for ``args.host`` (what has no SSH twin: the event stream, a source change)."""
    entry = resolve(args.host)
    if not entry.token:
        raise UnknownDevice(
            f"no token is saved for {entry.device.api_url}: pair it with `fieldtui pair {entry.device.host}` "
            f"(over SSH) or `fieldtui add {entry.device.host} --token T`"
        )
    return AgentClient.for_device(entry.device, entry.token, timeout=args.timeout)


async def follow_logs(client: AgentClient, lines: int, show: Callable[[LogLine], None]) -> None:
    """The last ``lines`` lines, then every new one from the event stream until cancelled; after a
    reconnect, the lines said meanwhile are read from ``GET /v1/logs?since=`` (each shown once)."""
    seen: set[tuple[float, str, str]] = set()

    def out(batch: list[LogLine]) -> float | None:
        for line in batch:
            key = (line.ts, line.logger, line.message)
            if key not in seen:
                seen.add(key)
                show(line)
        if len(seen) > 4 * lines + 1000:
            seen.clear()  # bounded; the overlap to guard against is a moment long
        return batch[-1].ts if batch else None

    def on_state(state: str, reason: str | None) -> None:
        if state == "reconnecting":
            print(f"fieldtui: event stream lost ({reason}); reconnecting", file=sys.stderr, flush=True)

    last = out((await client.logs(limit=lines)).lines)
    async with client.events(on_state=on_state) as stream:
        filled = 0
        async for event, model in stream:
            if stream.reconnects != filled and last is not None:  # fill the gap of the reconnect
                filled = stream.reconnects
                last = out((await client.logs(limit=KEEP_GAP, since=last)).lines) or last
            if event == "log" and isinstance(model, LogLine):
                last = out([model]) or last


def cmd_logs(args: argparse.Namespace) -> int:
    if args.lines < 1:
        raise ConsoleError("--lines must be 1 or more")
    if args.follow:
        if args.ssh:
            raise ConsoleError(
                "--follow reads the agent's event stream over HTTP; over SSH, run "
                "`journalctl -fu fieldtui-agent` on the device"
            )

        def show(line: LogLine) -> None:
            print(line.model_dump_json() if args.json else line.text(), flush=True)

        async def main() -> None:
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            with suppress(AttributeError, NotImplementedError, RuntimeError):  # a closed terminal too
                loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
                loop.add_signal_handler(signal.SIGHUP, task.cancel)  # type: ignore[union-attr]
            async with _client(args) as client:
                await follow_logs(client, args.lines, show)

        with suppress(KeyboardInterrupt, asyncio.CancelledError):  # ctrl-c: the end of following
            asyncio.run(main())
        return 0
    page = with_link(args, lambda link: link.logs(args.lines))
    if args.json:
        print_json(page)
    else:
        for line in page.lines:
            print(line.text())
    return 0


def cmd_source(args: argparse.Namespace) -> int:
    """Switch the camera: checked on the device first; a refused URI leaves the running source alone.
    With ``--ssh`` (or with HTTP unreachable on a device paired over SSH) the first camera's source is
    changed by ``fieldtui-agent camera set NAME --source -`` on the device, the URI on its stdin (a
    camera password never reaches a command line the device's ``ps`` shows)."""
    entry = resolve(args.host)
    if args.ssh or not entry.token:
        return _source_over_link(args)

    async def run():
        async with _client(args) as client:
            job = await client.wait_job((await client.set_source(args.uri)).id, timeout=args.job_timeout)
            return job, await client.status()

    try:
        job, status = asyncio.run(run())
    except AgentUnreachable:
        if entry.device.ssh is None:
            raise
        return _source_over_link(args)  # the API is down: the same change over SSH
    if job.state != "succeeded":
        now = status.source.uri if status.source else "no source"
        raise ConsoleError(f"source change {job.state}: {job.error or 'no reason given'}; still on {now}")
    return _print_source(args, status)


def _print_source(args: argparse.Namespace, status: PipelineStatus | CameraStatus) -> int:
    """The source after a change: the status as JSON with ``--json``, else one line."""
    if args.json:
        print_json(status)
    else:
        src = status.source
        print(f"source    {src.uri} ({src.kind}) {'up' if src.up else 'starting'}" if src else "no source")
    return 0


def _source_over_link(args: argparse.Namespace) -> int:
    """The source change as a camera change of the device's first camera, through the device link."""

    async def change(link: DeviceLink) -> CameraStatus:
        first = (await link.cameras()).cameras[0].name
        return await link.change_camera(first, CameraChange(source=args.uri), add=False)

    status = with_link(args, change)
    return _print_source(args, status)


def cmd_restart(args: argparse.Namespace) -> int:
    ack = with_link(args, lambda link: link.restart())
    if args.json:
        print_json(ack)
    else:
        print(ack.message)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter

    from fieldtui.protocol import BackendInfo

    infos = with_link(args, lambda link: link.doctor())
    if args.json:
        sys.stdout.write(TypeAdapter(list[BackendInfo]).dump_json(infos, indent=2).decode() + "\n")
    else:
        for info in infos:
            print(
                f"{'ok' if info.available else '--'}  {info.key:<12} {info.version or '-':<10} {info.reason}"
            )
    return 0


def link_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ssh", action="store_true", help="use SSH only (the agent's CLI on the device), not HTTP"
    )
    p.add_argument(
        "--accept-new",
        action="store_true",
        help="trust an SSH host key not yet in known_hosts (check its fingerprint)",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``pair``, ``logs``, ``restart``; ``--ssh`` and the SSH fallback on ``status``, ``push``, ``rollback``."""
    p = sub.add_parser("pair", help="pair a device over SSH: read its token and TLS pin, save it")
    p.add_argument("host", metavar="HOST", help="SSH host or ~/.ssh/config alias of the device")
    p.add_argument("--accept-new", action="store_true", help="trust a host key not yet in known_hosts")
    p.add_argument("--ssh-user", metavar="USER", help="SSH user (default: ~/.ssh/config, else yours)")
    p.add_argument(
        "--ssh-port", type=port(), metavar="PORT", help="SSH port (default: ~/.ssh/config, else 22)"
    )
    p.add_argument("--agent-home", metavar="DIR", help="the agent home on the device, if not its default")
    p.add_argument("--name", help="a name to call it by (default: the device's own name)")
    p.add_argument(
        "--sudo",
        action="store_true",
        help="run the agent's commands with `sudo -n` (found out by itself when the home is unreadable)",
    )
    p.add_argument("--json", action="store_true", help="print the saved DeviceRecord (never the token)")
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("logs", help="recent agent log lines of a device (its journal or agent.log over SSH)")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--lines", type=count(), default=100, help="how many (default 100)")
    p.add_argument(
        "--follow", "-f", action="store_true", help="then every new line as it is said (ctrl-c ends)"
    )
    p.add_argument(
        "--json", action="store_true", help="print one LogPage JSON document (--follow: a LogLine a line)"
    )
    p.add_argument("--timeout", type=seconds(), default=10.0)
    link_flags(p)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser(
        "source", help="switch a device's camera source (checked first; a refused one changes nothing)"
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("uri", metavar="URI", help="demo:, rtsp://…, http(s)://… (MJPEG), usb:N, a file or folder")
    p.add_argument("--json", action="store_true", help="print the PipelineStatus after the change")
    p.add_argument("--timeout", type=seconds(), default=10.0)
    p.add_argument("--job-timeout", type=seconds(), default=60.0, help="seconds to wait for the switch")
    link_flags(p)
    p.set_defaults(func=cmd_source)

    p = sub.add_parser(
        "restart", help="restart a device's agent: its pipeline over HTTP, the service over SSH (systemctl)"
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--json", action="store_true", help="print one Ack JSON document")
    p.add_argument("--timeout", type=seconds(), default=10.0)
    link_flags(p)
    p.set_defaults(func=cmd_restart)

    p = sub.add_parser("doctor", help="a device's backends and why each is or is not available")
    p.add_argument("host", metavar="HOST")
    p.add_argument("--json", action="store_true", help="print the BackendInfo list as JSON")
    p.add_argument("--timeout", type=seconds(), default=10.0)
    link_flags(p)
    p.set_defaults(func=cmd_doctor)
