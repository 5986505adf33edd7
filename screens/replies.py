"""How a screen's worker answers: one :class:`Reply` message carrying what it read from the device, or
the one line saying why it could not.

Each screen subclasses :class:`Reply` once per question (``class Listed(Reply[EngineList])``), so
``@on(Listed)`` handlers tell them apart; the workers fill them with :func:`read_reply` (one request)
or :func:`job_reply` (a job started, followed from the SSE stream to its end, its result parsed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from textual.message import Message
from textual.message_pump import MessagePump

from fieldtui.errors import AgentClientError
from fieldtui.jobwatch import watch_job
from fieldtui.protocol import Job

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Reply(Message, Generic[T]):
    """``value`` as the device answered it, or None and ``error`` saying why not."""

    def __init__(self, value: T | None, error: str | None = None) -> None:
        super().__init__()
        self.value, self.error = value, error


async def read_reply(pump: MessagePump, reply: type[Reply[T]], call: Awaitable[T]) -> None:
    """Post ``reply`` with what ``call`` returns, or with the line of the AgentClientError it raised."""
    try:
        value = await call
    except AgentClientError as err:
        pump.post_message(reply(None, str(err)))
        return
    pump.post_message(reply(value))


async def job_reply(
    pump: MessagePump,
    reply: type[Reply[M]],
    api: Any,
    start: Awaitable[Job],
    *,
    result: type[M],
    what: str,
    on_update: Callable[[Job], None],
    timeout: float,
) -> None:
    """Start a job on ``api`` (``start``), follow it to its end and post ``reply`` with its ``result``;
    a job that did not succeed is ``"<what> <state>: <its error>"``."""
    try:
        job = await watch_job(api, await start, on_update=on_update, timeout=timeout)
    except AgentClientError as err:
        pump.post_message(reply(None, str(err)))
        return
    if job.state != "succeeded" or job.result is None:
        pump.post_message(reply(None, f"{what} {job.state}: {job.error or 'no result'}"))
        return
    pump.post_message(reply(result.model_validate(job.result)))
