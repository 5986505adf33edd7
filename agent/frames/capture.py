"""The capture thread: keeps a source delivering frames into the pipeline's first slot.

It owns the source's whole life: opening, switching to a new one between frames, reconnecting a lost
live stream with exponential backoff (0.5 s doubling to 10 s, with jitter, so a fleet of agents does not
hammer a recovering camera in step), pacing files at their own frame rate, and the end of a file. It
also keeps what a technician needs to know about the source: up or not, and why not.
"""

from __future__ import annotations

import logging
import threading
import time

from agent.core.errors import SourceError
from agent.frames.handoff import Closed, Slot
from agent.frames.metrics import AgentMetrics
from agent.frames.sources import Frame, Source, SourceLost, make_source, open_source, redact
from agent.frames.sources.base import STALL_S
from agent.frames.stats import RollingStats
from fieldtui.protocol import SourceStatus
from fieldtui.protocol.backoff import backoff_delay

log = logging.getLogger("fieldtui.agent.capture")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


class Captured:
    """A frame as it leaves the capture thread."""

    __slots__ = ("frame", "source_gen", "capture_s")

    def __init__(self, frame: Frame, source_gen: int, capture_s: float) -> None:
        self.frame, self.source_gen, self.capture_s = frame, source_gen, capture_s


class EndOfSource:
    """Follows a finite source's last frame down the slots, so the end is seen once all are done."""

    __slots__ = ("source_gen",)

    def __init__(self, source_gen: int) -> None:
        self.source_gen = source_gen


class Capture:
    def __init__(self, uri: str, *, stats: RollingStats, metrics: AgentMetrics, fast: bool = False) -> None:
        self._uri = uri  # the real URI, credentials included: only ever handed to a source
        self.stats, self.metrics, self.fast = stats, metrics, fast
        self._lock = threading.Lock()
        self.source: Source | None = None
        self._pending: Source | None = None
        self.gen = 0  # bumped on every new source; frames carry it
        self.kind = ""
        self.up = False
        self.reason: str | None = None
        self.lost = False  # a live source is being reconnected
        self.at_eof = False
        self.reconnects = 0
        self.last_frame_at: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._slot: Slot | None = None
        self._pace_t0, self._pace_n = 0.0, 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def live(self) -> bool:
        src = self.source
        return src.live if src is not None else True

    # --- control (caller's thread) --------------------------------------------------------------

    def open(self, *, retry: bool = False) -> Source:
        """Open the source now (SourceError if it cannot be), or with ``retry`` leave a live source
        that is not there yet to the thread's reconnect loop."""
        source = self.source
        if source is None:
            try:
                source = open_source(self._uri)
            except SourceError as err:
                if not retry:
                    raise
                source = make_source(self._uri)  # still raises for a form that can never open
                if not source.live:  # a file that will not open now will not open later either
                    raise
                self._install(source, opened=False)
                self.lost, self.reason = True, str(err)
                return source
        self._install(source, opened=True)
        return source

    def start(self, slot: Slot) -> None:
        self._slot = slot
        self._stop.clear()
        self._wake.clear()
        self._thread = threading.Thread(target=self._loop, name="fieldtui-capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop the thread; close the source once it has let go. ``False`` if it is stuck in a read."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False  # closing a capture under a blocked read can crash the driver
            self._thread = None
        with self._lock:
            sources = [s for s in (self.source, self._pending) if s is not None]
            self.source = self._pending = None
            self.up = False
        for s in sources:
            s.close()
        return True

    def switch(self, uri: str, new: Source) -> None:
        """Use the already opened ``new`` source from the next frame on."""
        with self._lock:
            self._uri = uri
            if self.alive:
                old, self._pending = self._pending, new
            else:
                old, self.source = self.source, new
                self.kind = new.kind
        if old is not None:
            old.close()
        if self.alive:
            self._wake.set()
            # Wait (briefly) for the thread to take it, so a status read next shows the new source.
            deadline = time.monotonic() + STALL_S
            while self._pending is new and self.alive and time.monotonic() < deadline:
                time.sleep(0.01)

    def status(self) -> SourceStatus:
        src = self.source
        up, reason, last = self.up, self.reason, self.last_frame_at
        if up and self.live and last is not None and self.alive:
            silent = time.monotonic() - last
            if silent > STALL_S:
                up, reason = False, f"no frame for {silent:.0f} s from {redact(self._uri)}: stream stalled"
        size = src.size if src is not None else None
        return SourceStatus(
            uri=redact(self._uri),
            kind=self.kind or (src.kind if src is not None else "unknown"),
            up=up,
            reason=reason,
            reconnects=self.reconnects,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )

    # --- the thread -------------------------------------------------------------------------------

    def _install(self, source: Source, *, opened: bool) -> None:
        with self._lock:
            self.source = source
            self.kind = source.kind
            self.gen += 1
            self.up = opened
            if opened:
                self.lost, self.reason = False, None
            self.at_eof = False
            self.last_frame_at = time.monotonic() if opened else None
        self._pace_t0, self._pace_n = time.monotonic(), 0
        self.stats.restart_window()

    def _loop(self) -> None:
        attempt, lost_at = 0, 0.0
        while not self._stop.is_set():
            if self._pending is not None:
                with self._lock:
                    new, self._pending = self._pending, None
                    old = self.source
                if old is not None:
                    old.close()
                self._install(new, opened=True)
                attempt = 0
            src = self.source
            if src is None or self.at_eof:  # parked until switch() or stop()
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            if self.lost:
                lost_at = lost_at or time.monotonic()
                attempt = self._reconnect(src, attempt)
                if not self.lost:
                    log.info("source %s back after %.1f s", src.uri, time.monotonic() - lost_at)
                    lost_at = 0.0
                continue
            try:
                self._read_one(src)
            except Closed:
                return

    def _read_one(self, src: Source) -> None:
        started = time.monotonic()
        try:
            frame = src.read()
        except SourceLost as err:
            self._set_lost(src, redact(str(err)))
            return
        except Exception as err:  # a driver failing in a way we did not foresee: treat as lost
            self._set_lost(src, redact(f"{src.uri}: {type(err).__name__}: {err}"))
            return
        if frame is None:
            if src.live:
                self._set_lost(src, f"stream from {src.uri} ended")
            else:
                self._end_of_source(src)
            return
        now = time.monotonic()
        self.last_frame_at = now
        item = Captured(frame, self.gen, now - started)
        assert self._slot is not None
        if src.live:
            dropped = self._slot.put_latest(item)
            if dropped:
                self.metrics.count_dropped()
        else:
            if not self.fast:
                self._pace(getattr(src, "fps", None))
            dropped = False
            self._slot.put_wait(item)
        self.stats.add_capture(now, dropped)

    def _pace(self, fps: float | None) -> None:
        """Files play at their own frame rate; when the pipeline is behind, no burst to catch up."""
        if not fps:
            return
        due = self._pace_t0 + self._pace_n / fps
        now = time.monotonic()
        if due > now:
            self._stop.wait(due - now)
        elif now - due > 1.0 / fps:
            self._pace_t0, self._pace_n = now, 0
        self._pace_n += 1

    def _set_lost(self, src: Source, reason: str) -> None:
        log.warning("source lost, reconnecting: %s", reason)
        src.close()
        with self._lock:
            self.lost, self.reason, self.up = True, reason, False

    def _reconnect(self, src: Source, attempt: int) -> int:
        delay = backoff_delay(attempt, BACKOFF_START_S, BACKOFF_MAX_S)
        self._wake.wait(delay)
        self._wake.clear()
        if self._stop.is_set() or self._pending is not None:
            return attempt
        try:
            src.open()
        except Exception as err:
            reason = str(err) if isinstance(err, SourceError) else f"could not open {src.uri}: {err}"
            self.reason = redact(reason)
            log.debug("reconnect attempt %d failed: %s", attempt + 1, self.reason)
            return attempt + 1
        with self._lock:
            self.lost, self.reason, self.up = False, None, True
            self.reconnects += 1
            self.last_frame_at = time.monotonic()
        self.metrics.source_reconnects.inc()
        return 0

    def _end_of_source(self, src: Source) -> None:
        self.at_eof = True
        assert self._slot is not None
        self._slot.put_wait(EndOfSource(self.gen))
        with self._lock:
            self.up, self.reason = False, "end of file"
        src.close()
