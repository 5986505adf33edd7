"""The frame path: source -> preprocess -> infer -> postprocess, one thread per stage.

::

    capture --slot--> preprocess (+ camera health) --slot--> infer --slot--> postprocess (+ stats,
                                                                                  metrics, listeners)

Each slot holds one item, so capture, preprocessing and postprocessing of neighbouring frames overlap
the backend's inference and the backend is never left waiting for the CPU-side work. The first slot
differs by source: a *live* source (camera, stream, demo) overwrites an unread frame with the newer one
and counts a drop (stale frames are worthless and latency must not grow), while a file or image folder
waits for the slot to empty (back-pressure: every frame is processed, none dropped).

The pipeline is the parallelism: OpenCV runs single-threaded in this process (``cv2.setNumThreads(1)``
on start), so decoding and letterboxing on one core do not fight the inference runtime's own thread pool
for the others; on a 2-core box that contention costs more than OpenCV's threads gain. For the same
reason the interpreter hands the GIL over every millisecond instead of every 5 (``GIL_SWITCH_S``): when
the inference call returns, its thread needs the GIL back at once, not after up to 5 ms of another
stage's Python glue (demo model on 2 cores, pipeline / bare session.run in two paired runs of 4 and
6 rounds: 0.91 -> 1.01 and 0.80 -> 0.86).

A live source that stops (``SourceLost``) is reopened with backoff by the capture thread
(agent/frames/capture.py); meanwhile the state is ``reconnecting`` and the status says why frames stopped. The
end of a file drains the path and leaves the state ``stopped`` with reason ``end of file``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.frames.capture import Capture, Captured, EndOfSource
from agent.frames.handoff import Closed, Slot
from agent.frames.health import HealthMonitor
from agent.frames.metrics import AgentMetrics, StateSnapshot
from agent.frames.sources import open_source, redact
from agent.frames.stats import RollingStats
from agent.frames.thread_policy import ThreadTuner
from agent.inference.nonfinite import outputs_finite
from fieldtui.protocol import PipelineState, PipelineStatus, Sample, SourceStatus

__all__ = ["Pipeline"]

log = logging.getLogger("fieldtui.agent.pipeline")

HEALTH_EVERY = 5  # camera health on every 5th frame
GIL_SWITCH_S = 0.001  # see the module docstring
SWAP_WAIT_S = 10.0

Listener = Callable[[np.ndarray, Any, dict], None]


class _Work:
    """One frame on its way through the stages, with the detector that must finish it."""

    __slots__ = ("item", "detector", "tensor", "lb", "outputs", "pre_s", "infer_s")

    def __init__(self, item: Captured, detector: Any) -> None:
        self.item, self.detector = item, detector
        self.tensor = self.lb = self.outputs = None
        self.pre_s = self.infer_s = 0.0


def _tune_process() -> None:
    """Process-wide settings the stage threads need (see the module docstring)."""
    import cv2

    cv2.setNumThreads(1)
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))


class Pipeline:
    """The camera -> detector loop. Public methods are thread-safe; the caller owns the detector."""

    def __init__(
        self,
        detector: Any,
        source_uri: str,
        *,
        metrics: AgentMetrics | None = None,
        fast: bool = False,
        threads: int | None = None,
    ) -> None:
        self._detector = detector
        # intra-op threads: measured on this pipeline, or ``threads`` when set (agent/frames/thread_policy.py)
        self.tuner = ThreadTuner(self, fixed=threads)
        self.fast = fast
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self.metrics.set_state_provider(self._snapshot)
        self.metrics.declare_classes(detector.names.values())
        self.stats = RollingStats()
        self.capture = Capture(source_uri, stats=self.stats, metrics=self.metrics, fast=fast)
        self._cond = threading.Condition()  # guards _inflight and _ended_gen
        self._inflight: dict[int, int] = {}  # id(detector) -> frames it still has to finish
        self._health = HealthMonitor(every=HEALTH_EVERY)
        self._listeners: list[Listener] = []
        self._latest: tuple[np.ndarray, Any] | None = None
        self._processed_gen = 0  # source generation of the last processed frame
        self._ended_gen = -1  # source generation of the last finite source processed to its end
        self._error: str | None = None
        self._errors = 0
        self.nonfinite_frames = 0  # frames whose outputs held NaN/Inf (agent/inference/nonfinite.py)
        self._start_failed = False
        self._threads: list[threading.Thread] = []
        self._slots: list[Slot] = []
        self.started_at: float | None = None

    # --- control ---------------------------------------------------------------------------------

    @property
    def detector(self) -> Any:
        return self._detector

    @property
    def running(self) -> bool:
        return self.capture.alive or any(t.is_alive() for t in self._threads)

    def start(self, *, retry: bool = False) -> None:
        """Open the source and start the threads. SourceError if the source cannot be opened, unless
        ``retry``: then a live source that is not there yet is retried with backoff (``reconnecting``)."""
        if self.running:
            return
        self._error, self._start_failed = None, False
        try:
            source = self.capture.open(retry=retry)
        except Exception as err:
            self._start_failed, self._error = True, str(err)
            raise
        _tune_process()
        self._slots = [Slot(), Slot(), Slot()]
        self._threads = [
            threading.Thread(target=fn, name=f"fieldtui-{name}", daemon=True)
            for name, fn in (
                ("preprocess", self._preprocess_loop),
                ("infer", self._infer_loop),
                ("postprocess", self._postprocess_loop),
            )
        ]
        for t in self._threads:
            t.start()
        self.capture.start(self._slots[0])
        self.tuner.schedule("model loaded")
        self.started_at = time.time()
        log.info("pipeline started on %s", source.uri)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join every thread, then close the source. Safe to call twice."""
        deadline = time.monotonic() + timeout
        self.tuner.stop()
        for slot in self._slots:
            slot.close()
        clean = self.capture.stop(timeout)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()] + ([] if clean else ["fieldtui-capture"])
        if stuck:
            log.warning("threads still busy after %.0f s: %s", timeout, ", ".join(stuck))
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._cond:
            self._inflight.clear()
            self._cond.notify_all()

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until the current source, a finite one, has been processed to its end (or the pipeline
        is not running). ``False`` if ``timeout`` came first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._ended or not self.running, timeout)

    @property
    def _ended(self) -> bool:
        return self._ended_gen == self.capture.gen

    def set_source(self, uri: str) -> None:
        """Switch to ``uri``. It is opened first: if that fails, SourceError and the old source runs on."""
        new = open_source(uri)
        log.info("switching source to %s", new.uri)
        self.capture.switch(uri, new)

    def swap_detector(self, new: Any) -> Any:
        """Use ``new`` from the next frame on, without stopping. Returns the old detector once no
        frame in flight still needs it, so the caller may close it."""
        self.metrics.declare_classes(new.names.values())
        with self._cond:
            old, self._detector = self._detector, new
            done = self._cond.wait_for(lambda: not self._inflight.get(id(old)), timeout=SWAP_WAIT_S)
        if not done:
            log.warning("frames still in flight on the old detector after %.0f s", SWAP_WAIT_S)
        log.info("detector swapped: %s -> %s", getattr(old, "path", "?"), getattr(new, "path", "?"))
        self.tuner.schedule("model swapped in")
        return old

    def add_listener(self, fn: Listener) -> None:
        """``fn(frame_image, detections, names)`` after each frame, on the postprocess thread: be quick."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # --- reading ---------------------------------------------------------------------------------

    @property
    def state(self) -> PipelineState:
        if not self.running:
            return "failed" if self._start_failed else "stopped"
        if self._ended:
            return "stopped"
        if self._error:
            return "failed"
        if self.capture.lost:
            return "reconnecting"
        return "running" if self._processed_gen == self.capture.gen else "starting"

    def latest(self) -> tuple[np.ndarray, Any] | None:
        """The last processed frame and its detections (for snapshots)."""
        return self._latest

    def sample(self) -> Sample:
        return sample_of(self.stats, self._health.current)

    def source_status(self) -> SourceStatus:
        return self.capture.status()

    def status(self) -> PipelineStatus:
        return PipelineStatus(
            state=self.state,
            source=self.capture.status(),
            model=getattr(self._detector, "info", None),
            sample=self.sample(),
            error=self._error,
            started_at=self.started_at,
            threads=self.tuner.status(),
        )

    def _snapshot(self) -> StateSnapshot:
        s = self.stats.summary()
        return StateSnapshot(
            fps=s.fps,
            drop_rate=s.drop_rate,
            confidence_avg=s.confidence_avg,
            source_up=self.capture.status().up,
            camera=self._health.current,
            model=getattr(self._detector, "info", None),
        )

    # --- worker threads --------------------------------------------------------------------------

    def _preprocess_loop(self) -> None:
        gen = 0
        try:
            while True:
                item = self._slots[0].get()
                if isinstance(item, EndOfSource):
                    self._slots[1].put_wait(item)
                    continue
                if item.source_gen != gen:  # a new source: a new camera-health baseline
                    gen = item.source_gen
                    self._health = HealthMonitor(live=self.capture.live, every=HEALTH_EVERY)
                work = self._prepare(item)
                if work is not None:
                    self._slots[1].put_wait(work)
        except Closed:
            return

    def _prepare(self, item: Captured) -> _Work | None:
        with self._cond:
            det = self._detector
            self._inflight[id(det)] = self._inflight.get(id(det), 0) + 1
        work = _Work(item, det)
        try:
            t0 = time.perf_counter()
            work.tensor, work.lb = det.preprocess(item.frame.image)
            work.pre_s = time.perf_counter() - t0
            # Camera health runs here, while the previous frame is being inferred.
            self._health.update(item.frame.image, item.frame.ts)
            return work
        except Exception as err:
            self._failed("preprocess", err, work)
            return None

    def _infer_loop(self) -> None:
        try:
            while True:
                work = self._slots[1].get()
                if not isinstance(work, EndOfSource):
                    try:
                        t0 = time.perf_counter()
                        work.outputs = work.detector.infer(work.tensor)
                        work.infer_s = time.perf_counter() - t0
                        work.tensor = None
                    except Exception as err:
                        self._failed("inference", err, work)
                        continue
                self._slots[2].put_wait(work)
        except Closed:
            return

    def _postprocess_loop(self) -> None:
        try:
            while True:
                work = self._slots[2].get()
                if isinstance(work, EndOfSource):
                    with self._cond:
                        self._ended_gen = work.source_gen
                        self._cond.notify_all()
                    log.info("end of file: %d frames processed", self.stats.frames_total)
                    continue
                try:
                    self._finish(work)
                except Exception as err:
                    self._failed("postprocess", err, work)
                    continue
                self._release(work.detector)
        except Closed:
            return

    def _finish(self, work: _Work) -> None:
        det, item = work.detector, work.item
        if not outputs_finite(work.outputs):
            self.nonfinite_frames += 1
            self.metrics.frames_nonfinite.inc()
        t0 = time.perf_counter()
        dets = det.postprocess(work.outputs, work.lb)
        post_s = time.perf_counter() - t0
        record_frame(
            self.stats,
            self.metrics,
            time.monotonic(),
            item,
            work.pre_s,
            work.infer_s,
            post_s,
            dets,
            det.names,
        )
        self._latest = (item.frame.image, dets)
        self._processed_gen = item.source_gen
        self._error = None
        for fn in list(self._listeners):
            try:
                fn(item.frame.image, dets, det.names)
            except Exception:
                log.exception("frame listener %r failed", fn)

    def _release(self, det: Any) -> None:
        with self._cond:
            key = id(det)
            left = self._inflight.get(key, 0) - 1
            if left > 0:
                self._inflight[key] = left
            else:
                self._inflight.pop(key, None)
                self._cond.notify_all()

    def _failed(self, stage: str, err: Exception, work: _Work) -> None:
        self._errors += 1
        self._error = f"{stage} failed: {type(err).__name__}: {redact(str(err))}"
        # The first failure in full, then one line per 100 so a broken model cannot flood the log.
        if self._errors == 1:
            log.exception("%s failed", stage)
        elif self._errors % 100 == 0:
            log.error("%s (%d failures so far)", self._error, self._errors)
        self._release(work.detector)


def sample_of(stats: RollingStats, camera: Any, name: str | None = None) -> Sample:
    """The rolling window of ``stats`` as the wire's Sample (a camera's, with ``name`` on a multi-camera
    agent); ``camera`` is the camera-health reading."""
    s = stats.summary()
    return Sample(
        ts=time.time(),
        fps=round(s.fps, 2),
        latency_p50_ms=round(s.latency_p50_ms, 2),
        latency_p95_ms=round(s.latency_p95_ms, 2),
        stages_ms=s.stages_ms,
        confidence_avg=None if s.confidence_avg is None else round(s.confidence_avg, 4),
        detections=s.detections,
        drop_rate=round(s.drop_rate, 4),
        frames_total=s.frames_total,
        dropped_total=s.dropped_total,
        camera=camera,
        camera_name=name,
    )


def record_frame(
    stats: RollingStats,
    metrics: AgentMetrics,
    now: float,
    item: Captured,
    pre_s: float,
    infer_s: float,
    post_s: float,
    dets: Any,
    names: dict[int, str],
) -> dict[str, int]:
    """One finished frame into a camera's rolling stats and the agent's metrics (the one-camera
    pipeline's and each camera lane's, agent/frames/multicam.py); its detections per class."""
    counts = class_counts(dets, names)
    stats.add_frame(
        now,
        capture=item.capture_s,
        preprocess=pre_s,
        infer=infer_s,
        postprocess=post_s,
        scores=dets.scores,
        counts=counts,
    )
    metrics.observe_frame(
        capture=item.capture_s, preprocess=pre_s, infer=infer_s, postprocess=post_s, counts=counts
    )
    return counts


def class_counts(dets: Any, names: dict[int, str]) -> dict[str, int]:
    """Detections per class name in one frame (vectorised: one np.unique, no loop over boxes)."""
    if not len(dets):
        return {}
    ids, n = np.unique(dets.class_ids, return_counts=True)
    return {names.get(int(i), f"class_{int(i)}"): int(c) for i, c in zip(ids, n, strict=True)}
