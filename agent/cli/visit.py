"""``fieldtui-agent report --since T --json``: what the console's visit report reads, over SSH.

Over HTTP the report asks ``GET /v1/jobs``, ``/v1/benchmarks``, ``/v1/forwarding``, ``/v1/series`` and
``/v1/snapshot.jpg``. A device that only SSH reaches answers the same through this command: from the
agent serving from the home (on localhost, with the home's token), or, with no agent serving, from
``state.db`` (jobs and benchmarks; the series and the snapshot live only in a running agent, and
``notes`` says so). The forwarding key never leaves the device, not even masked.
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

from agent.cli.args import home_flags
from fieldtui.protocol import BenchmarkList, JobList, SeriesPage
from fieldtui.protocol.argtypes import count
from fieldtui.protocol.forwarding import ForwardingState
from fieldtui.protocol.visit import VisitFacts

KEY_LEFT_OUT = "left out"


def _online(home: Any, since: float | None, width: int) -> VisitFacts:
    from agent.cli.models import LocalAgent
    from agent.core.errors import AgentError

    agent = LocalAgent(home)
    with agent.http:
        facts = VisitFacts(
            jobs=JobList.model_validate_json(
                agent.call("GET", "/v1/jobs", params={"limit": 500}).content
            ).jobs,
            benchmarks=BenchmarkList.model_validate_json(
                agent.call("GET", "/v1/benchmarks", params={"limit": 200}).content
            ).runs,
            forwarding=ForwardingState.model_validate_json(agent.call("GET", "/v1/forwarding").content),
            series=SeriesPage.model_validate_json(
                agent.call("GET", "/v1/series", params={} if since is None else {"since": since}).content
            ),
        )
        try:
            jpeg = agent.call("GET", "/v1/snapshot.jpg", params={"width": width}).content
            facts.snapshot_jpeg_b64 = base64.b64encode(jpeg).decode("ascii")
        except AgentError as err:
            facts.snapshot_error = str(err)
    if facts.forwarding is not None:
        facts.forwarding = facts.forwarding.model_copy(update={"api_key": KEY_LEFT_OUT})
    return facts


def _offline(home: Any) -> VisitFacts:
    from agent.bench.history import BenchmarkHistory
    from agent.core.state import StateDB

    why = f"no agent serves from {home.root}"
    db = StateDB(home.state_db)
    try:
        return VisitFacts(
            jobs=db.recent_jobs(500, None),
            benchmarks=BenchmarkHistory(db).list(200),
            snapshot_error=f"{why}: no live frame",
            notes=[f"{why}: forwarding state, the per-minute series and the snapshot were not read"],
        )
    finally:
        db.close()


def cmd_report(args: argparse.Namespace) -> int:
    from agent.core.config import load_config

    home = load_config(home=args.home, config_file=args.config).agent_home.ensure()
    running = home.read_runtime() is not None
    facts = _online(home, args.since, args.snapshot_width) if running else _offline(home)
    if args.json:
        sys.stdout.write(facts.model_dump_json() + "\n")
    else:
        print(
            f"{len(facts.jobs)} jobs, {len(facts.benchmarks)} benchmark runs, "
            f"{len(facts.series.points) if facts.series else 0} series points, "
            f"snapshot {'yes' if facts.snapshot_jpeg_b64 else facts.snapshot_error}"
        )
        for note in facts.notes:
            print(f"  {note}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="jobs, benchmarks, forwarding, series and a snapshot: the visit report's"
    )
    home_flags(p, json="print one JSON document (what `fieldtui report` reads over SSH)")
    p.add_argument("--since", type=float, default=None, metavar="EPOCH", help="series points from this time")
    p.add_argument("--snapshot-width", type=count(), default=480, help="scale the snapshot to this width")
    p.set_defaults(func=cmd_report)
