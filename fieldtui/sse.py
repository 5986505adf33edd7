"""Server-Sent Events from the agent, parsed into protocol models, surviving drops.

:class:`SSEDecoder` is the line parser of the WHATWG spec (``event:``, multi-line ``data:``, ``id:``,
``retry:``, ``:`` comments). :class:`EventStream` holds a ``GET /v1/events`` open, yields
``(event, model)`` pairs, and when the connection drops (agent restarted, Wi-Fi hiccup, silent peer)
reconnects with exponential backoff, sending ``Last-Event-ID`` so the agent can resume where it was.
Authentication failures, a changed TLS pin and other refusals are not retried: they need a person.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from fieldtui.errors import CONNECTION_CLOSED, AgentClientError, AgentUnreachable
from fieldtui.protocol import HealthReport, Job, LogLine, ModelEvent, ModelInfo, Sample
from fieldtui.protocol.backoff import backoff_delay


class StreamingClient(Protocol):
    """What an :class:`EventStream` needs of its client (:class:`fieldtui.client.AgentClient` is one)."""

    base_url: str

    def stream(self, path: str, headers: dict[str, str]) -> AbstractAsyncContextManager[Any]: ...


log = logging.getLogger("fieldtui.sse")

EVENTS_PATH = "/v1/events"
# Each event's models, tried in order: a ``model`` event from an agent whose ``change`` this console
# does not know yet still arrives as the ModelInfo it extends.
EVENT_MODELS: dict[str, tuple[type[BaseModel], ...]] = {
    "sample": (Sample,),
    "camera": (Sample,),  # a multi-camera agent: one per camera and tick, Sample.camera_name says which
    "job": (Job,),
    "log": (LogLine,),
    "health": (HealthReport,),
    "model": (ModelEvent, ModelInfo),
}

StreamState = Literal["connecting", "connected", "reconnecting", "closed"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed lines (without their terminator); get an event back on each blank line that ends one."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self.last_event_id: str | None = None  # persists across events, as the spec says

    def decode(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment, e.g. the agent's keep-alive `: ping`
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        # other field names are ignored, as the spec says
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data, retry = self._event or "message", self._data, self._retry
        self._event, self._data, self._retry = "", [], None
        if not data:
            if retry is not None:  # a bare `retry:` block still changes the reconnection delay
                return ServerSentEvent(event="", data="", id=self.last_event_id, retry=retry)
            return None
        return ServerSentEvent(event=event, data="\n".join(data), id=self.last_event_id, retry=retry)


def parse_event(sse: ServerSentEvent) -> tuple[str, BaseModel | dict[str, Any]]:
    """``sample`` -> Sample, ``job`` -> Job, ``model`` -> ModelEvent (why the model changed), ...;
    unknown events (or shapes) come back as a dict.

    Raises ValueError when ``data`` is not JSON.
    """
    payload = json.loads(sse.data)
    for model in EVENT_MODELS.get(sse.event, ()):
        try:
            return sse.event, model.model_validate(payload)
        except ValidationError:
            log.debug("event %s does not match %s", sse.event, model.__name__)
    return sse.event, payload if isinstance(payload, dict) else {"value": payload}


class EventStream:
    """``async with client.events() as events: async for event, model in events: ...``

    Reconnects until closed or refused.
    ``on_state(state, reason)`` is called when the link changes (connecting, connected, reconnecting
    with the reason, closed), so a live view can say "reconnecting: connection refused ...".
    ``max_retries`` (None = forever) bounds consecutive failed reconnects; the last error is then raised.
    """

    def __init__(
        self,
        client: StreamingClient,
        *,
        last_event_id: str | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        max_retries: int | None = None,
        on_state: Callable[[StreamState, str | None], None] | None = None,
    ) -> None:
        self._client = client
        self.last_event_id = last_event_id
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_retries = max_retries
        self._on_state = on_state
        self.state: StreamState = "connecting"
        self.reconnects = 0
        self._closed = False
        self._iterator: AsyncGenerator[tuple[str, BaseModel | dict[str, Any]], None] | None = None

    def _set_state(self, state: StreamState, reason: str | None = None) -> None:
        self.state = state
        if self._on_state is not None:
            self._on_state(state, reason)

    def close(self) -> None:
        """Stop after the current event (the iterator then ends)."""
        self._closed = True

    def __aiter__(self) -> AsyncIterator[tuple[str, BaseModel | dict[str, Any]]]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def aclose(self) -> None:
        """Close the connection now (leaving an ``async for`` early does not, until garbage collection)."""
        self._closed = True
        if self._iterator is not None:
            await self._iterator.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[tuple[str, BaseModel | dict[str, Any]], None]:
        failures = attempt = 0  # failed connections in a row; retries since the last event
        try:
            while not self._closed:
                got_event = False
                try:
                    async with aclosing(self._items()) as items:
                        async for item in items:
                            got_event, failures, attempt = True, 0, 0
                            yield item
                            if self._closed:
                                return
                    reason = CONNECTION_CLOSED
                    error: AgentClientError = AgentUnreachable(
                        reason, url=self._client.base_url + EVENTS_PATH
                    )
                except AgentClientError as err:
                    if not _retryable(err):
                        raise
                    reason, error = err.summary, err
                failures = 0 if got_event else failures + 1
                if self.max_retries is not None and failures > self.max_retries:
                    raise error
                self.reconnects += 1
                self._set_state("reconnecting", reason)
                delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
                log.info("event stream lost (%s); reconnecting in %.1f s", reason, delay)
                await asyncio.sleep(delay)
                attempt += 1
        finally:
            self._set_state("closed")

    async def _items(self) -> AsyncIterator[tuple[str, BaseModel | dict[str, Any]]]:
        """One connection's events, parsed; a ``retry:`` field sets the first reconnection delay, an event
        whose data is not JSON is skipped with a warning."""
        async with aclosing(self._connect_once()) as events:
            async for sse in events:
                if sse.retry is not None:
                    self.backoff_initial = sse.retry / 1000
                if not sse.data:
                    continue
                try:
                    item = parse_event(sse)
                except ValueError:
                    log.warning("skipping an SSE %r event whose data is not JSON", sse.event)
                    continue
                yield item

    async def _connect_once(self) -> AsyncIterator[ServerSentEvent]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        if self.state != "reconnecting":
            self._set_state("connecting")
        async with self._client.stream(EVENTS_PATH, headers=headers) as response:
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise AgentClientError(
                    f"{response.request.url} answered {kind or 'no content type'}, not an event stream: "
                    "is this a fieldtui agent?",
                    status=response.status_code,
                    url=str(response.request.url),
                )
            self._set_state("connected")
            decoder = SSEDecoder()
            decoder.last_event_id = self.last_event_id
            async for line in response.aiter_lines():
                sse = decoder.decode(line)
                if sse is not None:
                    self.last_event_id = sse.id
                    yield sse


def _retryable(err: AgentClientError) -> bool:
    # Down, restarting or overloaded: try again. Refused token, changed pin, 404: a person must act.
    return isinstance(err, AgentUnreachable) or (err.status is not None and err.status >= 500)
