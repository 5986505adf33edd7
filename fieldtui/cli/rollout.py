"""``fieldtui rollout | rollouts | tag``: a model to many saved devices in waves, from the command line.

``fieldtui rollout MODEL --version V --devices a,b|--all|--tag NAME [--canary N] [--waves 25%,100%|exp]
[--soak S] [--max-failures N|P%] [--no-rollback-on-abort]`` checks everything first (the file, the version
name, every device, the waves, the criteria: a bad one is one line and nothing is written), saves the
rollout (fieldtui/rollout/store.py) and runs it with :class:`~fieldtui.rollout.runner.RolloutRunner`,
printing a line on stderr whenever a device changes stage. ``--resume ID`` continues a rollout that
stopped (the laptop slept, the terminal closed); ``rollouts`` lists them. Exit status: 0 when every
device runs the new version, 1 when the rollout was aborted or left devices behind, 2 for bad input.

Registered by fieldtui/cli/main.py (:func:`add_parsers`).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from contextlib import suppress

from pydantic import TypeAdapter

from fieldtui.cli.devices import print_json
from fieldtui.config import ConsoleConfig, SavedDevice, check_tags
from fieldtui.errors import ConsoleError
from fieldtui.protocol.argtypes import count, seconds
from fieldtui.rollout import (
    RolloutError,
    RolloutPlan,
    RolloutRunner,
    RolloutState,
    RolloutStore,
    make_plan,
)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def select_devices(config: ConsoleConfig, args: argparse.Namespace) -> list[SavedDevice]:
    """The saved devices ``--devices``, ``--all`` or ``--tag`` name, in order, each once."""
    if args.devices is not None:
        names = _split(args.devices)
        if not names:
            raise ConsoleError("--devices is empty: name saved devices, like --devices cam-1,cam-2")
        chosen = []
        for name in names:
            entry = config.find(name)
            if entry is None:
                raise ConsoleError(
                    f"unknown device {name[:80]!r}: a rollout goes to saved devices (`fieldtui discover` "
                    "lists them; `fieldtui pair HOST` saves one); nothing was started"
                )
            chosen.append(entry)
    elif args.tag is not None:
        (tag,) = check_tags([args.tag])
        chosen = config.tagged(tag)
        if not chosen:
            raise ConsoleError(
                f"no saved device is tagged {tag!r}: `fieldtui tag HOST {tag}` tags one; nothing was started"
            )
    else:
        chosen = config.load()
        if not chosen:
            raise ConsoleError("no saved devices: `fieldtui pair HOST` saves one; nothing was started")
    return chosen


def new_plan(args: argparse.Namespace, config: ConsoleConfig) -> tuple[RolloutPlan, dict[str, str]]:
    """The plan the flags describe, everything checked; (plan, device names by key)."""
    if not args.model or not args.version:
        raise ConsoleError("give MODEL and --version V (or --resume ID to continue a rollout)")
    entries = select_devices(config, args)
    plan = asyncio.run(
        make_plan(
            args.model,
            args.version,
            entries,
            canary=args.canary,
            waves=args.waves,
            soak_s=args.soak,
            failures=args.max_failures,
            rollback_on_abort=not args.no_rollback_on_abort,
            device_timeout_s=args.device_timeout,
        )
    )
    return plan, {e.key: e.device.name for e in entries}


class ProgressPrinter:
    """A line on stderr each time a device changes stage (and every quarter of an upload)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.seen: dict[str, tuple] = {}
        self.status = ""

    def __call__(self, state: RolloutState) -> None:
        if state.status != self.status:
            self.status = state.status
            if state.status == "paused":
                self.stream.write(f"rollout {state.plan.id} paused\n")
        for d in state.devices:
            key = (d.stage, int(d.percent // 25) if d.stage == "uploading" else 0, d.reason, d.via)
            if self.seen.get(d.device) == key:
                continue
            self.seen[d.device] = key
            if d.stage == "queued" and not d.reason:
                continue
            self.stream.write(device_line(d) + "\n")
        self.stream.flush()


def device_line(d) -> str:
    what = d.stage.replace("_", " ")
    if d.stage == "uploading":
        what += f" {d.percent:.0f}%"
    if d.stage == "probation" and d.probation_ends_at:
        what += f" ({max(0.0, d.probation_ends_at - time.time()):.0f} s left)"
    via = f" via {d.via}" if d.via else ""
    if d.via == "ssh" and d.link_note:
        via += f" ({d.link_note})"
    return f"wave {d.wave + 1}  {d.name:<16} {what}{via}" + (f": {d.reason}" if d.reason else "")


def summary_lines(state: RolloutState) -> list[str]:
    plan = state.plan
    counts = ", ".join(f"{n} {stage.replace('_', ' ')}" for stage, n in state.counts().items())
    lines = [f"rollout {plan.id}: {plan.version} {state.status} ({counts})"]
    if state.abort_reason:
        lines.append(f"why       {state.abort_reason}")
    return lines


def _run(runner: RolloutRunner) -> RolloutState:
    async def main() -> RolloutState:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP"):
            with suppress(AttributeError, NotImplementedError, RuntimeError):
                loop.add_signal_handler(getattr(signal, name), task.cancel)  # type: ignore[union-attr]
        return await runner.run()

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        rid = runner.state.plan.id
        print(
            f"fieldtui: rollout {rid} stopped; `fieldtui rollout --resume {rid}` continues it",
            file=sys.stderr,
        )
        raise KeyboardInterrupt from None


def cmd_rollout(args: argparse.Namespace) -> int:
    config = ConsoleConfig()
    store = RolloutStore()
    rid = args.resume or args.abort
    if args.resume is not None and args.abort is not None:
        raise ConsoleError("give --resume ID or --abort ID, not both")
    if rid is not None:
        flag = "--resume" if args.resume is not None else "--abort"
        given = [flag for flag, value in (("MODEL", args.model), ("--version", args.version)) if value]
        if given or args.devices is not None or args.tag is not None or args.all:
            raise ConsoleError(
                f"{flag} ID acts on a rollout as it was planned: drop {', '.join(given) or 'the devices'}"
            )
        state = store.load(rid)
        if state.status in ("aborted", "done"):
            raise RolloutError(f"rollout {rid} is {state.status}: nothing to {flag[2:]}; start a new rollout")
        verb = "resuming" if args.resume is not None else "aborting"
        print(
            f"{verb} rollout {state.plan.id}: {state.plan.version} to {len(state.devices)} devices",
            file=sys.stderr,
        )
    else:
        plan, names = new_plan(args, config)
        state = RolloutState.start(plan, names)
        store.save(state)
        waves = " + ".join(str(n) for n in plan.waves)
        print(
            f"rollout {plan.id}: {plan.version} to {len(plan.devices)} devices in waves of {waves}; "
            f"if it stops, `fieldtui rollout --resume {plan.id}` continues it",
            file=sys.stderr,
        )
    runner = RolloutRunner(
        state,
        store=store,
        devices=config,
        on_change=None if args.quiet else ProgressPrinter(),
        concurrency=args.concurrency,
    )
    if args.abort is not None:  # rolls back the devices this rollout activated, marks the rest skipped
        runner.abort(args.reason or "aborted from the command line")
    final = _run(runner)
    if args.json:
        print_json(final)
    else:
        print("\n".join(summary_lines(final)))
    return 0 if final.status == "done" else 1


def cmd_rollouts(args: argparse.Namespace) -> int:
    states = RolloutStore().list()
    if args.json:
        sys.stdout.write(TypeAdapter(list[RolloutState]).dump_json(states, indent=2).decode() + "\n")
        return 0
    if not states:
        print("no rollouts yet (`fieldtui rollout MODEL --version V --all` starts one)")
        return 0
    rows = [("ID", "VERSION", "STATUS", "DONE", "WAVE", "STARTED", "WHY")]
    for s in states:
        done = sum(d.stage == "done" for d in s.devices)
        rows.append(
            (
                s.plan.id,
                s.plan.version,
                s.status,
                f"{done}/{len(s.devices)}",
                f"{min(s.current_wave + 1, len(s.plan.waves))}/{len(s.plan.waves)}",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created_at)),
                s.abort_reason[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    config = ConsoleConfig()
    entry = config.find(args.host)
    if entry is None:
        raise ConsoleError(f"no saved device matches {args.host[:80]!r}: `fieldtui discover` lists them")
    given = check_tags(_split(args.tags or ""))
    if args.clear:
        tags: list[str] = []
    elif args.remove:
        if not given:
            raise ConsoleError("--remove needs the tags to remove, like `fieldtui tag HOST line-2 --remove`")
        tags = [t for t in entry.tags if t not in given]
    else:
        tags = entry.tags + [t for t in given if t not in entry.tags]
    if tags != entry.tags:
        entry = config.set_tags(args.host, tags)
    print(f"{entry.device.name}: {', '.join(entry.tags) or 'no tags'}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``rollout``, ``rollouts`` and ``tag`` on the ``fieldtui`` parser."""
    p = sub.add_parser(
        "rollout",
        help="a model to many saved devices in waves, canary first; stops and rolls back on failures",
    )
    p.add_argument("model", nargs="?", metavar="MODEL", help="model file (.onnx, .engine, .hef, .tflite)")
    p.add_argument("--version", help="version name on the devices, like v7")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--devices", metavar="D1,D2", help="saved devices by name, id or address, in order")
    which.add_argument("--all", action="store_true", help="every saved device")
    which.add_argument("--tag", metavar="NAME", help="the saved devices with this tag (`fieldtui tag`)")
    p.add_argument("--canary", type=count(0), default=1, help="devices in the first wave (default 1)")
    p.add_argument(
        "--waves",
        default="100%",
        help="after the canary: cumulative shares like 25%%,100%% (default 100%%), or exp (each wave doubles)",
    )
    p.add_argument(
        "--soak",
        type=seconds(),
        default=None,
        metavar="SECONDS",
        help="least time each device serves the new version before its wave is judged (default: its probation)",
    )
    p.add_argument(
        "--max-failures",
        default="0",
        metavar="N|P%",
        help="abort when more devices than this fail activation or probation (default 0)",
    )
    p.add_argument(
        "--no-rollback-on-abort", action="store_true", help="on abort, leave the devices as they are"
    )
    p.add_argument(
        "--device-timeout",
        type=seconds(),
        default=30.0,
        metavar="SECONDS",
        help="a device that does not answer this long is reported unreachable (default 30)",
    )
    p.add_argument("--concurrency", type=count(1), default=8, help="devices worked on at once (default 8)")
    p.add_argument(
        "--resume", metavar="ID", help="continue a rollout that stopped (`fieldtui rollouts` lists them)"
    )
    p.add_argument(
        "--abort",
        metavar="ID",
        help="stop a rollout for good: roll back the devices it activated (unless it was started with "
        "--no-rollback-on-abort), skip the rest",
    )
    p.add_argument("--reason", help="with --abort: why, kept in the rollout's record")
    p.add_argument("--json", action="store_true", help="print the final RolloutState JSON document")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("rollouts", help="the rollouts started from this laptop, newest first")
    p.add_argument("--json", action="store_true", help="print them as a JSON list of RolloutState")
    p.set_defaults(func=cmd_rollouts)

    p = sub.add_parser("tag", help="show, add or remove a saved device's tags (for `rollout --tag`)")
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("tags", nargs="?", metavar="TAG,TAG", help="tags to add (or remove with --remove)")
    p.add_argument("--remove", action="store_true", help="remove the tags given instead of adding them")
    p.add_argument("--clear", action="store_true", help="remove every tag")
    p.set_defaults(func=cmd_tag)
