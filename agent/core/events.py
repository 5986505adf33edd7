"""The in-process event bus behind ``GET /v1/events`` (Server-Sent Events).

Anything may publish from any thread (the sample ticker on the event loop, job threads, the log
handler); each event is serialised once and handed to the event loop, which numbers it and appends it
to every subscriber's queue. A queue is bounded: a subscriber that reads too slowly loses its *oldest*
events (counted in :attr:`Subscription.dropped`), so it never slows the pipeline, the publisher or the
other subscribers. A short replay buffer lets a reconnecting client resume after ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel

EVENT_NAMES = ("sample", "job", "model", "health", "log", "camera")  # camera: multi-camera agents


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    name: str
    data: str  # one JSON protocol model

    def encode(self) -> bytes:
        """The SSE wire form (``data`` is single-line JSON, so one ``data:`` field suffices)."""
        return f"id: {self.id}\nevent: {self.name}\ndata: {self.data}\n\n".encode()


class Subscription:
    """One SSE client's bounded queue. Created and read on the event loop."""

    def __init__(self, maxlen: int) -> None:
        self._queue: deque[Event] = deque(maxlen=maxlen)
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def _put(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque drops the oldest on append
        self._queue.append(event)
        self._wake.set()

    def _close(self) -> None:
        self.closed = True
        self._wake.set()

    async def get(self, timeout: float) -> Event | None:
        """The next event; None after ``timeout`` seconds without one, or once the bus closed."""
        while not self._queue:
            if self.closed:
                return None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return self._queue.popleft()


class EventBus:
    """Fan-out of named events to SSE subscribers; see the module docstring."""

    def __init__(self, queue_size: int = 256, replay_size: int = 256) -> None:
        self.queue_size = queue_size
        self._replay: deque[Event] = deque(maxlen=replay_size)
        self._subscribers: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._next_id = 1
        self._lock = threading.Lock()
        self.published = 0
        self.dropped = 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` from now on (called once the server's loop runs)."""
        with self._lock:
            self._loop = loop
            self._loop_thread = threading.get_ident()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, name: str, data: BaseModel) -> None:
        """Queue an event for every subscriber. Cheap, never blocks, safe from any thread; a no-op
        before :meth:`attach` or after :meth:`close` (nobody can be listening then)."""
        payload = data.model_dump_json()
        with self._lock:
            loop = self._loop
            on_loop = self._loop_thread == threading.get_ident()
        if loop is None:
            return
        if on_loop:
            self._deliver(name, payload)
            return
        # RuntimeError: the loop closed while we were publishing (shutting down, nobody listens)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._deliver, name, payload)

    def _deliver(self, name: str, payload: str) -> None:
        # ids are given here, on the loop, so they follow delivery order whatever thread published
        event = Event(self._next_id, name, payload)
        self._next_id += 1
        self.published += 1
        self._replay.append(event)
        for sub in self._subscribers:
            before = sub.dropped
            sub._put(event)
            self.dropped += sub.dropped - before

    def subscribe(self, last_event_id: int | None = None) -> Subscription:
        """A new queue (call on the loop); with ``last_event_id``, replays the newer events still held."""
        sub = Subscription(self.queue_size)
        if self._loop is None:
            sub._close()
            return sub
        if last_event_id is not None:
            for event in self._replay:
                if event.id > last_event_id:
                    sub._put(event)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscriber's stream (shutdown: open SSE responses must finish for uvicorn to stop)."""
        with self._lock:
            self._loop = None
        for sub in list(self._subscribers):
            sub._close()
        self._subscribers.clear()
