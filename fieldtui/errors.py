"""Errors the console shows a technician.

``str(err)`` is always one line that says what went wrong and what to do next; the CLI prints it as is
and the TUI shows it as a notification. Anything else escaping a console service is a bug.
"""

from __future__ import annotations

from fieldtui.protocol import Problem

# The one wording for a link that was up and went (agent stopped or restarted, network gone), whichever
# layer noticed it: httpx's "incomplete chunked read" or an SSE stream that simply ended.
CONNECTION_CLOSED = "the agent stopped answering (connection closed)"


class ConsoleError(Exception):
    """Base class of every error a console service raises on purpose."""


class ConfigError(ConsoleError):
    """The console's own config file is unreadable or a saved entry is wrong."""


class UnknownDevice(ConsoleError):
    """A HOST argument that matches no saved device and is not an address either."""


class AgentClientError(ConsoleError):
    """The agent answered with an error, or could not be reached.

    ``status`` is the HTTP status when the agent answered (``None`` for transport failures) and
    ``problem`` its RFC 9457 body when it sent one; ``str()`` carries the problem's ``detail``.
    ``summary`` is what happened in a few words a technician knows, for a banner that already says
    where and what next ("the agent refused the connection"); it falls back to the detail.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        problem: Problem | None = None,
        summary: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.problem = problem
        self._summary = summary

    @property
    def detail(self) -> str:
        return self.problem.detail if self.problem else str(self)

    @property
    def summary(self) -> str:
        return self._summary or self.detail


class AgentUnauthorized(AgentClientError):
    """401/403: the token is missing or no longer valid (the device was reset or re-paired)."""


class AgentUnreachable(AgentClientError):
    """Nothing answered, or the connection dropped: the agent is down or the address is wrong."""


class AgentTimeout(AgentUnreachable):
    """The agent accepted the connection but did not answer in time."""


class TLSPinMismatch(AgentClientError):
    """The device presented a certificate other than the one pinned at pairing.

    The token is never sent in this case: the check runs during the TLS handshake.
    """

    def __init__(self, message: str, *, expected: str, got: str, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.expected = expected
        self.got = got


class AgentProtocolError(AgentClientError):
    """The peer answered, but not with what a compatible fieldtui agent sends."""
