"""``fieldtui-agent status | logs | home``: what the console's SSH path reads on the device.

- ``status --json`` prints a DeviceStatus, the document ``fieldtui status --json`` prints: from the
  serving agent's own API on localhost (token and address from the home), or, with no agent serving,
  the device's identity with a ``failing`` health and a ``stopped`` pipeline saying so.
- ``logs --lines N --json`` prints a LogPage: the tail of ``agent.log`` in the home, or the service
  journal (``journalctl -u fieldtui-agent``) when there is no log file there.
- ``home --json`` prints AgentPaths: where an SFTP upload lands before ``models add`` takes it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from agent.cli.args import home_flags
from fieldtui.protocol import (
    AgentPaths,
    DeviceInfo,
    DeviceStatus,
    HealthReport,
    LogLine,
    LogPage,
    PipelineStatus,
)
from fieldtui.protocol.argtypes import count

SERVICE = "fieldtui-agent"
# agent.log lines: "%(asctime)s %(levelname)s %(name)s: %(message)s" (agent/core/logbuf.py)
_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ([A-Z]+) (\S+): (.*)")
# journald PRIORITY -> logging level name
_PRIORITY = {0: "CRITICAL", 1: "CRITICAL", 2: "CRITICAL", 3: "ERROR", 4: "WARNING", 5: "INFO", 6: "INFO"}


def _print(model: Any) -> None:
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")


def _config(args: argparse.Namespace) -> Any:
    from agent.core.config import load_config

    return load_config(home=args.home, config_file=args.config)


def device_status(config: Any) -> DeviceStatus:
    """The serving agent's DeviceStatus, or one that says no agent is serving from this home."""
    from agent import __version__
    from agent.cli.models import LocalAgent
    from agent.server.auth import token_info
    from agent.server.device import device_info

    home = config.agent_home.ensure()
    if home.read_runtime() is not None:
        agent = LocalAgent(home)
        with agent.http:
            return DeviceStatus(
                device=DeviceInfo.model_validate_json(agent.call("GET", "/v1/device").content),
                health=HealthReport.model_validate_json(agent.call("GET", "/v1/health").content),
                status=PipelineStatus.model_validate_json(agent.call("GET", "/v1/status").content),
            )
    info = token_info(config)
    why = f"agent not running (no agent serves from {home.root})"
    return DeviceStatus(
        device=device_info(device_id=info.device_id, name=info.name, api_url=info.api_url),
        health=HealthReport(status="failing", reasons=[why], version=__version__, uptime_s=0.0),
        status=PipelineStatus(state="stopped", error=why),
    )


def tail_log_file(path: Path, lines: int) -> LogPage:
    """The last ``lines`` records of an ``agent.log`` (continuation lines belong to the record above)."""
    records: deque[LogLine] = deque(maxlen=max(lines, 1))
    with path.open(encoding="utf-8", errors="replace") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            m = _LINE.match(raw)
            if m:
                ts = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
                records.append(LogLine(ts=ts, level=m.group(3), logger=m.group(4), message=m.group(5)))
            elif records:  # a traceback or a multi-line message
                last = records[-1]
                records[-1] = last.model_copy(update={"message": f"{last.message}\n{raw}"})
    return LogPage(lines=list(records)[-lines:] if lines > 0 else [])


def journal(lines: int) -> LogPage:
    """The service journal's last ``lines`` entries (the agent runs under systemd)."""
    try:
        out = subprocess.run(
            ["journalctl", "-u", SERVICE, "-n", str(lines), "-o", "json", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        from agent.core.errors import AgentError

        raise AgentError(f"cannot read the journal of {SERVICE}: {err}") from None
    page = []
    for raw in out.stdout.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        if not isinstance(message, str):  # journald sends non-UTF-8 messages as byte arrays
            message = bytes(message or []).decode("utf-8", "replace")
        page.append(
            LogLine(
                ts=int(entry.get("__REALTIME_TIMESTAMP", 0)) / 1e6,
                level=_PRIORITY.get(int(entry.get("PRIORITY", 6)), "DEBUG"),
                logger=entry.get("SYSLOG_IDENTIFIER", SERVICE),
                message=message,
            )
        )
    return LogPage(lines=page)


def cmd_status(args: argparse.Namespace) -> int:
    result = device_status(_config(args))
    if args.json:
        _print(result)
    else:
        print(f"{result.device.name}  health {result.health.status}  pipeline {result.status.state}")
        for reason in result.health.reasons:
            print(f"  {reason}")
        for note in result.health.notes:  # a probation under way
            print(f"  {note}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from agent.core.errors import AgentError

    if args.lines < 1:
        raise AgentError("--lines must be 1 or more")
    home = _config(args).agent_home
    if home.log_file.is_file():
        page = tail_log_file(home.log_file, args.lines)
    elif shutil.which("journalctl"):
        page = journal(args.lines)
    else:
        raise AgentError(f"no log yet: {home.log_file} does not exist and there is no journal to read")
    if args.json:
        _print(page)
    else:
        for line in page.lines:
            print(line.text())
    return 0


def cmd_home(args: argparse.Namespace) -> int:
    home = _config(args).agent_home.ensure()
    paths = AgentPaths(
        home=str(home.root),
        staging=str(home.models_dir / ".staging"),
        log_file=str(home.log_file),
        running=home.read_runtime() is not None,
    )
    if args.json:
        _print(paths)
    else:
        print("\n".join(f"{k:<8} {v}" for k, v in paths.model_dump().items()))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``status``, ``logs`` and ``home`` on the ``fieldtui-agent`` parser."""

    p = sub.add_parser("status", help="identity, health and pipeline of the agent serving from the home")
    home_flags(p, json="print one JSON document")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("logs", help="recent agent log lines (agent.log, else the service journal)")
    home_flags(p, json="print one JSON document")
    p.add_argument("--lines", type=count(), default=100, help="how many (default 100)")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("home", help="where the agent home, its staging area and its log are")
    home_flags(p, json="print one JSON document")
    p.set_defaults(func=cmd_home)
