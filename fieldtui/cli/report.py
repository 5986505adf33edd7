"""``fieldtui report -o visit.html``: the visit report to hand over (fieldtui/report.py).

Every saved device (or those named with ``--devices``) is asked what changed since ``--since``; the
HTML file is self-contained (fieldtui/report_html.py). ``--json`` prints the same report as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from fieldtui.cli.devices import resolve
from fieldtui.config import ConsoleConfig
from fieldtui.errors import ConsoleError
from fieldtui.protocol.argtypes import seconds
from fieldtui.report import collect, parse_since, write_report


def cmd_report(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    entries = [resolve(name) for name in args.devices] if args.devices else ConsoleConfig().load()
    if not entries:
        raise ConsoleError("no saved device to report on: pair or add one first, or name them with --devices")
    if args.output is None and not args.json:
        raise ConsoleError("say where to write it: -o visit.html (or --json to print it)")
    if args.output is not None:
        path = Path(args.output).expanduser()
        report = asyncio.run(write_report(entries, since, path, site=args.site, timeout=args.timeout))
        unreachable = sum(1 for d in report["devices"] if not d["reachable"])
        print(
            f"wrote {path}: {len(report['devices'])} device(s), {unreachable} unreachable, "
            f"{len(report['failures'])} failure(s)",
            file=sys.stderr if args.json else sys.stdout,
        )
    else:
        report = asyncio.run(collect(entries, since, timeout=args.timeout, site=args.site))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write the visit report: what changed on each device, and is it working"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="the HTML file to write (self-contained)")
    p.add_argument(
        "--since", metavar="TIME", help="start of the visit: 90m, 2h, 1d ago, or 2026-12-01T09:30 (12h)"
    )
    p.add_argument(
        "--devices",
        nargs="+",
        metavar="HOST",
        help="saved name or id, host, host:port or URL (default: all saved)",
    )
    p.add_argument("--site", default="", help="the site's name, for the title")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument(
        "--timeout", type=seconds(), default=5.0, help="seconds per request to a device (default 5)"
    )
    p.set_defaults(func=cmd_report)
