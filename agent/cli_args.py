"""Flags every ``fieldtui-agent`` command that works on an agent home spells the same way."""

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
