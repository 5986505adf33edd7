"""Argument types for both command lines (``fieldtui`` and ``fieldtui-agent``): a hostile or mistyped
number is refused by argparse with one line naming the flag ("argument --timeout: 99 is more than 30
seconds"), never carried into a request or the pipeline where it would surface as a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(high: float | None = None) -> Callable[[str], float]:
    """A finite number of seconds above 0 (and at most ``high``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is more than {high:g} seconds (the most allowed)")
        return value

    parse.__name__ = "seconds"
    return parse


def count(low: int = 1, high: int | None = None) -> Callable[[str], int]:
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


def port(low: int = 1) -> Callable[[str], int]:
    """A TCP port number (``low`` 0: 0 picks a free one)."""
    return count(low, 65535)


def fraction(text: str) -> float:
    """A number from 0 to 1 (a confidence or IoU threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value
