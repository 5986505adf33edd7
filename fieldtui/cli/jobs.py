"""What the CLI commands that run a job on a device (``bench``, ``rebuild``) share: their options
become a :mod:`fieldtui.protocol` request (a bad one is one ConsoleError line), the job's progress is one
rewritten line on stderr, and the result is printed as text or, with ``--json``, as its JSON document.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fieldtui.cli.devices import print_json
from fieldtui.cli.link import with_link
from fieldtui.errors import ConsoleError
from fieldtui.link.fallback import BenchProgressFn, DeviceLink
from fieldtui.protocol import first_error
from fieldtui.protocol.progress import JobProgress

R = TypeVar("R", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)


def request_from(model: type[R], what: str, fields: dict[str, Any]) -> R:
    """``model`` from the options that were given (None: not given, the model's default applies)."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        raise ConsoleError(f"bad {what} option {first_error(err)}") from None


def run_job(
    args: argparse.Namespace,
    op: Callable[[DeviceLink, BenchProgressFn | None], Awaitable[M]],
    lines: Callable[[M], list[str]],
) -> int:
    """Run ``op(link, on_progress)``, progress on stderr unless ``--json``; print its result."""
    progress = JobProgress(quiet=args.json)
    try:
        result = with_link(args, lambda link: op(link, None if args.json else progress))
    finally:
        progress.end()  # also when the job failed
    if args.json:
        print_json(result)
    else:
        print("\n".join(lines(result)))
    return 0
