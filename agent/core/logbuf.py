"""Recent agent log lines for ``GET /v1/logs`` and SSE ``log``, and the rotating ``agent.log``.

Everything that leaves the process this way is redacted first: credentials in URIs
(``rtsp://user:pass@cam`` -> ``rtsp://***@cam``), ``Authorization`` headers, ``token=``/``key=``-like
values, and the literal API token itself, so neither the console nor a support bundle ever carries a
secret.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.frames.sources import redact as redact_uri
from fieldtui.protocol import LogLine, LogPage

# Only what is a secret, never a word that looks like one ("basic fusions", "the token: expired" stay):
# an Authorization header's credentials, a bearer token (long, as tokens are), key=value pairs and
# quoted JSON values under a secret's name.
_AUTH_HEADER = re.compile(r"(?i)\b(authorization\s*[:=]\s*(?:bearer|basic|digest|token)?\s*)([^\s\"',;]+)")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/-]{16,}=*")
_NAMES = r"(?:token|access_token|api_key|apikey|password|passwd|secret)"
_SECRET_PARAM = re.compile(rf"(?i)\b({_NAMES}=)([^\s&\"',;]+)")
_SECRET_JSON = re.compile(rf"(?i)(\"{_NAMES}\"\s*:\s*\")([^\"]*)")
# "api_key: sk-12345" is a key; "the token: expired" is a word: a value counts when it has a digit or a
# symbol in it, or is as long as keys are.
_SECRET_COLON = re.compile(
    rf"(?i)\b({_NAMES}:\s*)(?=[^\s&\"',;]*[0-9._~+/=-]|[^\s&\"',;]{{16}})([^\s&\"',;]+)"
)

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = redact_uri(text)  # user:password@ and secret query parameters, as sources report them
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}***", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}***", text)
    text = _SECRET_COLON.sub(lambda m: f"{m.group(1)}***", text)
    return _SECRET_JSON.sub(lambda m: f"{m.group(1)}***", text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose every output (message, arguments, traceback) went through :func:`redact`."""

    def __init__(self, fmt: str, secrets: Callable[[], Iterable[str]] = tuple) -> None:
        super().__init__(fmt)
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets())


class RepeatFilter(logging.Filter):
    """At most ``burst`` records of one message (logger and format string) per ``window`` seconds: a
    fault that repeats thousands of times a second (accept() failing under a socket flood) must not
    rotate the log's history away. The first record after a window says how many were left out.
    One instance may sit on several handlers: the verdict is kept on the record."""

    def __init__(self, burst: int = 20, window: float = 60.0) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, left out]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_fieldtui_repeat", None)
        if verdict is not None:
            return verdict
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window:
                if entry is not None and entry[2]:
                    record.msg = (
                        f"{record.msg} [{int(entry[2])} more like this in {self.window:.0f} s not logged]"
                    )
                if len(self._seen) >= 4096:
                    self._seen.clear()
                self._seen[key] = [now, 1, 0]
                verdict = True
            else:
                entry[1] += 1
                verdict = entry[1] <= self.burst
                if not verdict:
                    entry[2] += 1
        record._fieldtui_repeat = verdict  # type: ignore[attr-defined]
        return verdict


class LogBuffer(logging.Handler):
    """Keeps the last ``capacity`` records as :class:`LogLine` and hands each to ``on_line``."""

    def __init__(
        self,
        capacity: int = 2000,
        *,
        level: int = logging.INFO,
        secrets: Callable[[], Iterable[str]] = tuple,
        on_line: Callable[[LogLine], None] | None = None,
    ) -> None:
        super().__init__(level)
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._secrets = secrets
        self.on_line = on_line
        self._guard = threading.local()  # an on_line that logs must not recurse into us

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._guard, "active", False):
            return
        self._guard.active = True
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                # the API shows what failed, not the traceback: that stays in agent.log
                message = f"{message} ({record.exc_info[0].__name__}: {record.exc_info[1]})"
            line = LogLine(
                ts=record.created,
                level=record.levelname,
                logger=record.name,
                message=redact(message, self._secrets()),
            )
            with self.lock:
                self._lines.append(line)
            if self.on_line is not None:
                self.on_line(line)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
        finally:
            self._guard.active = False

    def query(self, since: float | None = None, level: str | None = None, limit: int = 200) -> LogPage:
        """Lines newer than ``since`` (a Unix time), at ``level`` or above, the newest ``limit``."""
        floor = LEVELS.get((level or "DEBUG").upper(), 0)
        with self.lock:
            lines = list(self._lines)
        picked = [ln for ln in lines if (since is None or ln.ts > since) and LEVELS.get(ln.level, 0) >= floor]
        return LogPage(lines=picked[-limit:] if limit > 0 else [])


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    _said_full = 0.0

    def _open(self):  # type: ignore[no-untyped-def]
        stream = super()._open()
        os.chmod(self.baseFilename, 0o600)  # each new file after a rollover too
        return stream

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """A full disk is one line on stderr a minute (the ring buffer still has every line), not a
        traceback per record."""
        from agent.core.diskspace import is_disk_full

        if not is_disk_full(sys.exc_info()[1]):
            super().handleError(record)
            return
        now = time.monotonic()
        if now - self._said_full >= 60.0:
            self._said_full = now
            sys.stderr.write(f"fieldtui-agent: {self.baseFilename} not written: the disk is full\n")


def rotating_file_handler(path: Path, secrets: Callable[[], Iterable[str]] = tuple) -> logging.Handler:
    """``agent.log``: 5 MB x 4 files at most, mode 0600, redacted like the API."""
    handler = _PrivateRotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    return handler
