"""Credentials never shown: the one place console output passes through before a person sees it.

The agent already redacts what it returns (agent/core/logbuf.py, agent/sources); what is left are the
strings the console itself echoes - a source URI the technician typed, a stream URL Trio pulls, an
address in an error line. :func:`redact` hides URI userinfo and secret query parameters; the TUI's
toasts (screens/app.py) and every line the ``fieldtui`` command prints (:class:`RedactingStream`,
installed by fieldtui/cli/main.py) go through it, and screens call it where they show a URL.
"""

from __future__ import annotations

import re
from typing import TextIO

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]+@")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:token|access_token|api_key|apikey|key|password|passwd|pass|secret|sig|signature)=)"
    r"[^\s&#\"',;]+"
)


def redact(text: str) -> str:
    """``rtsp://admin:hunter2@cam/live?token=abc`` -> ``rtsp://***@cam/live?token=***``, in a bare URI
    or anywhere in a message."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


class RedactingStream:
    """A text stream that redacts what is written to it, then hands it on (``sys.stdout`` and
    ``sys.stderr`` of the ``fieldtui`` command line)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding... as the wrapped stream
        return getattr(self._stream, name)
