"""A one-item handoff between two pipeline threads.

One item, not a queue: a deeper queue would only add latency (live sources) or memory (files) without
adding throughput, since each stage already overlaps its neighbours. ``put_latest`` is for live frames
(the newer frame wins, the replaced one is a drop); ``put_wait`` is back-pressure.
"""

from __future__ import annotations

import threading
from typing import Any


class Closed(Exception):
    """The slot was closed: the pipeline is stopping."""


class Slot:
    _EMPTY = object()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = self._EMPTY
        self._closed = False

    def put_latest(self, item: Any) -> bool:
        """Put without waiting; ``True`` when an unread item was replaced (a dropped frame)."""
        with self._cond:
            if self._closed:
                raise Closed
            replaced = self._item is not self._EMPTY
            self._item = item
            self._cond.notify_all()
            return replaced

    def put_wait(self, item: Any) -> None:
        """Wait for the slot to be empty, then put."""
        with self._cond:
            while self._item is not self._EMPTY and not self._closed:
                self._cond.wait()
            if self._closed:
                raise Closed
            self._item = item
            self._cond.notify_all()

    def get(self) -> Any:
        """Wait for an item and take it."""
        with self._cond:
            while self._item is self._EMPTY and not self._closed:
                self._cond.wait()
            if self._closed:
                raise Closed
            item, self._item = self._item, self._EMPTY
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake every waiter with :class:`Closed`, now and on every later call."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
