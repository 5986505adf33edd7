"""Flags every ``fieldtui-agent`` command that works on an agent home spells the same way."""

from __future__ import annotations

import argparse
import math


def home_flags(p: argparse.ArgumentParser, *, config: bool = True, json: str | None = None) -> None:
    """``--home`` and ``--config`` (unless ``config`` is False); ``--json`` with help ``json`` if given."""
    p.add_argument("--home", default=None, metavar="DIR", help="agent home (default: $FIELDTUI_AGENT_HOME)")
    if config:
        p.add_argument(
            "--config", default=None, metavar="FILE", help="settings file (default: HOME/config.toml)"
        )
    if json is not None:
        p.add_argument("--json", action="store_true", help=json)


# Argument types: a hostile or mistyped number is refused by argparse with one line naming the flag,
# never carried into the pipeline or a benchmark (the console's own are in fieldtui/cli/types.py).


def seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def fraction(text: str) -> float:
    """A number from 0 to 1 (a confidence or IoU threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def count(low: int = 1, high: int | None = None):
    """A whole number from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            most = f" and at most {high}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"{text} is out of range: use at least {low}{most}")
        return value

    parse.__name__ = "count"
    return parse


def port(low: int = 0):
    """A TCP port (0: pick a free one)."""
    return count(low, 65535)
