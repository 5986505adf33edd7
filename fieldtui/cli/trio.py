"""``fieldtui trio HOST [--endpoint URL] [--key-file PATH] [--stream-url URL] [--rules FILE] [--json]``:
Trio forwarding's settings from the command line, the twin of the Trio screen (screens/trio.py).

Without a flag it shows the settings; with flags it changes only those, in one ``PUT /v1/forwarding``
(the agent checks everything first and changes nothing when anything is wrong). The key is read from a
file or stdin, never from the command line (it would show in ``ps``), and never printed: the agent keeps
it bound to its endpoint (a new ``--endpoint`` without ``--key-file`` drops it, and this says so).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from fieldtui.cli.devices import print_json
from fieldtui.cli.models import _client
from fieldtui.forwarding import key_state, read_key_file, read_rules
from fieldtui.protocol import ForwardingState, ForwardingUpdate
from fieldtui.protocol.argtypes import seconds
from fieldtui.redact import redact


def update_of(args: argparse.Namespace) -> ForwardingUpdate:
    """The PUT body of the flags given; every file is read and checked before anything is sent."""
    fields: dict[str, object] = {}
    if args.endpoint is not None:
        fields["base_url"] = args.endpoint
    if args.stream_url is not None:
        fields["stream_url"] = args.stream_url
    if args.mode is not None:
        fields["mode"] = args.mode
    if args.condition is not None:
        fields["condition"] = args.condition
    if args.enable is not None:
        fields["enabled"] = args.enable
    if args.rules is not None:
        fields["rules"] = read_rules(args.rules)
    if args.key_file is not None:
        fields["api_key"] = read_key_file(args.key_file)
    return ForwardingUpdate(**fields)


def format_state(state: ForwardingState) -> list[str]:
    r = state.rules
    stream = redact(state.stream_url) if state.stream_url else "(none: Trio has nothing to watch)"
    return [
        f"forwarding {'on' if state.enabled else 'off (only test forwards)'}, mode {state.mode}",
        f"endpoint   {state.base_url}" + (f"  frames to {state.frame_url}" if state.mode == "frame" else ""),
        f"API key    {key_state(state.api_key)}",
        f"stream     {stream}",
        f"condition  {state.condition}",
        f"rules      classes {', '.join(r.classes) or 'every class'}; confidence ≥ {r.min_confidence:.2f}; "
        f"cooldown {r.cooldown_s:g} s; {r.rate_per_minute:g} a minute, bursts of {r.burst}; "
        f"redact {', '.join(r.redact_classes) or 'nothing'}",
    ]


def cmd_trio(args: argparse.Namespace) -> int:
    update = update_of(args)

    async def run() -> tuple[ForwardingState | None, ForwardingState]:
        async with _client(args.host, args.timeout) as client:
            if not update.model_fields_set:
                return None, await client.forwarding()
            return await client.forwarding(), await client.forwarding_update(update)

    before, state = asyncio.run(run())
    state = state.model_copy(update={"api_key": key_state(state.api_key)})  # not even a few characters
    if args.json:
        print_json(state)
    else:
        print("\n".join(format_state(state)))
    # Issue 17's rule: the key is bound to its endpoint; a new one without --key-file drops it.
    dropped = before is not None and _had_key(before.api_key) and not _had_key(state.api_key)
    if dropped and "api_key" not in update.model_fields_set:
        print(
            "fieldtui: the Trio key was dropped: it was bound to the old endpoint; "
            "give it again with --key-file for the new one",
            file=sys.stderr,
        )
    return 0


def _had_key(masked: str) -> bool:
    return not key_state(masked).startswith("not set")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trio", help="show or change Trio forwarding: endpoint, API key (write-only), stream URL, rules"
    )
    p.add_argument("host", metavar="HOST", help="saved name or id, host, host:port or URL")
    p.add_argument("--endpoint", metavar="URL", help="Trio's base URL (https://; the key is bound to it)")
    p.add_argument(
        "--key-file",
        metavar="PATH",
        help="file holding the API key alone on one line (- reads stdin); sent, never shown",
    )
    p.add_argument("--stream-url", metavar="URL", help="the live stream Trio pulls in check-once mode")
    p.add_argument(
        "--rules", metavar="FILE", help='JSON rules, e.g. {"classes": ["person"], "cooldown_s": 30}'
    )
    p.add_argument("--mode", choices=("check-once", "frame"), help="Trio pulls the stream, or gets frames")
    p.add_argument("--condition", metavar="TEXT", help="what Trio should judge ({classes} is replaced)")
    onoff = p.add_mutually_exclusive_group()
    onoff.add_argument(
        "--enable", dest="enable", action="store_const", const=True, help="forward by the rules"
    )
    onoff.add_argument(
        "--disable", dest="enable", action="store_const", const=False, help="only test forwards"
    )
    p.add_argument(
        "--json", action="store_true", help="print the ForwardingState (the key only as set/not set)"
    )
    p.add_argument("--timeout", type=seconds(), default=10.0)
    p.set_defaults(func=cmd_trio, enable=None)
