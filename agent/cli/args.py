"""Flags every ``fieldtui-agent`` command that works on an agent home spells the same way (the argument
types, shared with the console, are in fieldtui/protocol/argtypes.py)."""

from __future__ import annotations

import argparse


def home_flags(p: argparse.ArgumentParser, *, config: bool = True, json: str | None = None) -> None:
    """``--home`` and ``--config`` (unless ``config`` is False); ``--json`` with help ``json`` if given."""
    p.add_argument("--home", default=None, metavar="DIR", help="agent home (default: $FIELDTUI_AGENT_HOME)")
    if config:
        p.add_argument(
            "--config", default=None, metavar="FILE", help="settings file (default: HOME/config.toml)"
        )
    if json is not None:
        p.add_argument("--json", action="store_true", help=json)


SOURCE_HELP = (
    "demo:, file path, rtsp://, http(s)://, usb:N (default demo:). A URI with a password belongs in "
    "--source-file, config.toml or $FIELDTUI_AGENT_SOURCE: any user can read a command line (ps)"
)


def source_flags(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--source URI`` or ``--source-file FILE`` (the URI on its first line: kept out of ps)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--source", default=default, help=SOURCE_HELP)
    group.add_argument(
        "--source-file",
        default=None,
        metavar="FILE",
        help="read the source URI from the first line of FILE (keep it 0600): a camera password stays "
        "out of the process list",
    )


def source_from(
    args: argparse.Namespace, env: dict[str, str] | None = None, *, warn: bool = True
) -> str | None:
    """The source the flags give: ``--source-file``'s first line, else ``--source`` (with ``warn``, a
    warning when it carries a password: ``serve`` runs for months with its command line on show; ``run``
    keeps its one-line errors), else ``env``'s ``$FIELDTUI_AGENT_SOURCE`` when given, else None
    (``serve``: config.toml, then the environment, decide)."""
    import logging
    import os

    from agent.core.errors import AgentError
    from agent.frames.sources import redact

    if getattr(args, "source_file", None):
        try:
            with open(args.source_file, encoding="utf-8") as f:
                uri = next((line.strip() for line in f if line.strip()), "")
        except OSError as err:
            raise AgentError(f"cannot read --source-file {args.source_file}: {err.strerror}") from None
        if not uri:
            raise AgentError(
                f"--source-file {args.source_file} is empty; put the source URI on its first line"
            )
        return uri
    uri = args.source
    if warn and uri and redact(uri) != uri:
        logging.getLogger("fieldtui.agent.cli").warning(
            "--source %s carries a secret that every user of this device can read in the process list "
            "(ps, /proc/%d/cmdline); give it with --source-file FILE, `source` in config.toml or "
            "$FIELDTUI_AGENT_SOURCE instead",
            redact(uri),
            os.getpid(),
        )
    if uri is None and env is not None:
        return env.get("FIELDTUI_AGENT_SOURCE") or None
    return uri
