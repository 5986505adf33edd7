"""Several cameras, one detector: per-camera capture and preprocessing, one shared inference thread.

::

    camera A: capture --slot--> preprocess (+ health) --ready--\\
    camera B: capture --slot--> preprocess (+ health) --ready----> infer (one call, batched) --> postprocess
    camera C: capture --slot--> preprocess (+ health) --ready--/      round-robin over ready    (+ stats,
                                                                                               metrics)

Each camera keeps what the one-camera pipeline (agent/frames/pipeline.py) gives its one source: its own
capture thread with drop counting and reconnect/backoff (agent/frames/capture.py), a camera-health
monitor and rolling stats. Each camera has one *ready* place for a preprocessed frame; its preprocessing
waits while that is full, so a live camera's newer frames replace older ones in its capture slot and are
counted as that camera's drops.

The inference thread takes ready frames round-robin, starting after the camera served last, so under
overload every camera gets its turn. When the model takes a dynamic batch (probed once at start with a
batch of two), frames of the same tensor shape go into one call: the thread waits at most ``max_wait``
seconds for cameras that are up but not ready yet, so a lone camera is not delayed. Otherwise cameras
take turns, one frame per call. A camera that is dead, reconnecting or stalled has nothing ready and
is simply skipped: it never holds up the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.core.cameras import CameraSpec
from agent.core.errors import AgentError
from agent.frames.camera_lane import CameraLane, Work, empty_sample
from agent.frames.camera_metrics import CameraMetrics, CameraState
from agent.frames.handoff import Closed, Slot
from agent.frames.metrics import AgentMetrics
from agent.frames.pipeline import _tune_process, record_frame
from agent.frames.sources import open_source, redact
from agent.inference import postprocess as post
from agent.inference.nonfinite import outputs_finite
from fieldtui.protocol import Sample, SourceStatus

__all__ = ["MultiPipeline", "probe_batch"]

log = logging.getLogger("fieldtui.agent.multicam")

MAX_WAIT_S = 0.004  # longest an inference call waits for more cameras' frames
MAX_BATCH = 8

CameraListener = Callable[[str, np.ndarray, Any, dict], None]


class CameraError(AgentError):
    """A camera request that cannot be done (unknown name, duplicate, the last camera)."""

    status = 409


def probe_batch(detector: Any, limit: int) -> int:
    """How many frames one call may carry: the batch of a fixed-batch model (its calls are padded, see
    Detector.infer), up to ``limit``; 1 for a fixed batch of 1 or a model that fails on two frames."""
    if limit <= 1:
        return 1
    batch_dim = detector.backend.inputs[0].shape[0]
    if isinstance(batch_dim, int):
        return max(1, min(batch_dim, limit))
    one = np.full(detector.input_shape, 114 / 255, dtype=detector.input_dtype)
    try:
        single = detector.infer(one)
        double = detector.infer(np.concatenate([one, one]))
    except Exception as err:  # the runtime's own exception types: the model is not really dynamic
        log.info("model does not take a batch of 2 (%s): cameras take turns", type(err).__name__)
        return 1
    ok = len(single) == len(double) and all(
        np.shape(d)[:1] == (2,) and np.shape(d)[1:] == np.shape(s)[1:]
        for s, d in zip(single, double, strict=True)
    )
    if not ok:
        log.info("model outputs do not follow the batch: cameras take turns")
        return 1
    return limit


class MultiPipeline:
    """Cameras sharing one detector. Public methods are thread-safe; the caller owns the detector."""

    def __init__(
        self,
        detector: Any,
        cameras: list[CameraSpec],
        *,
        metrics: AgentMetrics | None = None,
        max_batch: int = MAX_BATCH,
        max_wait: float = MAX_WAIT_S,
    ) -> None:
        if not cameras:
            raise CameraError("no camera configured: add one")
        self.detector = detector
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self.metrics.declare_classes(detector.names.values())
        self.camera_metrics = CameraMetrics(self.metrics)
        self.camera_metrics.set_state_provider(self._camera_states)
        self.max_wait = max_wait
        self._batch_limit = max_batch
        self.max_batch = probe_batch(detector, max_batch)
        self._cond = threading.Condition()  # guards every lane's ready frame and the lane table
        self._control = threading.Lock()  # one add/change/remove at a time
        self._infer_lock = threading.Lock()  # held around each inference call
        self._specs: dict[str, CameraSpec] = {}
        self._lanes: dict[str, CameraLane] = {}
        for spec in cameras:
            if spec.name in self._specs:
                raise CameraError(f"camera {spec.name!r} is configured twice; names must be unique")
            self._specs[spec.name] = spec
        self._listeners: list[CameraListener] = []
        # ``probe(camera, seconds)``: each frame's latency, capture to detections (agent/bench/cameras.py)
        self.latency_probe: Callable[[str, float], None] | None = None
        self._post = Slot()
        self._threads: list[threading.Thread] = []
        self._closed = True
        self._rr = 0
        self.started_at: float | None = None

    # --- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every enabled camera, then the shared threads. A camera that cannot be opened yet is
        retried in the background; a source of a form that can never open stops the start (SourceError)
        with nothing left running."""
        _tune_process()
        started: list[CameraLane] = []
        try:
            for spec in self._specs.values():
                if spec.enabled:
                    lane = CameraLane(spec, self)
                    lane.start()
                    started.append(lane)
        except Exception:
            for lane in started:
                lane.stop()
            raise
        with self._cond:
            self._lanes = {lane.name: lane for lane in started}
            self._closed = False
        self._post = Slot()
        self._threads = [
            threading.Thread(target=self._infer_loop, name="fieldtui-infer", daemon=True),
            threading.Thread(target=self._postprocess_loop, name="fieldtui-postprocess", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.started_at = time.time()
        log.info("%d cameras started; %s", len(started), self.batching())

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            lanes = list(self._lanes.values())
            self._cond.notify_all()
        self._post.close()
        for lane in lanes:
            lane.stop(timeout)
        for t in self._threads:
            t.join(timeout)

    def cameras(self) -> list[CameraSpec]:
        return list(self._specs.values())

    def spec(self, name: str) -> CameraSpec:
        spec = self._specs.get(name)
        if spec is None:
            raise CameraError(f"no camera named {name!r}; known: {', '.join(self._specs)}", status=404)
        return spec

    def put_camera(self, spec: CameraSpec) -> bool:
        """Add ``spec``, or change the camera of that name (source, conf, enabled) without touching
        the others. A new source is opened first: if it cannot be, SourceError and nothing changes.
        ``True`` when the camera was added."""
        with self._control:
            old = self._specs.get(spec.name)
            lane = self._lanes.get(spec.name)
            if old is None or lane is None:
                if spec.enabled and not self._closed:
                    new = CameraLane(spec, self)
                    new.start()
                    with self._cond:
                        self._lanes[spec.name] = new
                self._specs[spec.name] = spec
                log.info(
                    "camera %s %s",
                    spec.name,
                    "added" if old is None else "enabled" if spec.enabled else "changed",
                )
                return old is None
            if not spec.enabled:
                self._drop_lane(spec.name)
            elif spec.source != old.source:
                lane.capture.switch(spec.source, open_source(spec.source))
                log.info("camera %s switched to %s", spec.name, redact(spec.source))
            lane.spec = spec
            self._specs[spec.name] = spec
            return False

    def remove_camera(self, name: str) -> None:
        with self._control:
            self.spec(name)
            if len(self._specs) == 1:
                raise CameraError(f"camera {name!r} is the last one; add another camera before removing it")
            self._drop_lane(name)
            del self._specs[name]
            self.camera_metrics.forget(name)
            log.info("camera %s removed", name)

    def _drop_lane(self, name: str) -> None:
        with self._cond:
            lane = self._lanes.pop(name, None)
        if lane is not None:
            lane.stop()

    def swap_detector(self, new: Any) -> Any:
        """Use ``new`` from the next frame on without stopping a camera; frames prepared for the old
        model are dropped. Returns the old detector once no inference runs on it, so the caller may
        close it (postprocessing a frame in flight needs only its output layout, not the session)."""
        self.metrics.declare_classes(new.names.values())
        batch = probe_batch(new, self._batch_limit)
        with self._cond:
            old, self.detector, self.max_batch = self.detector, new, batch
            self._cond.notify_all()
        with self._infer_lock:
            pass
        log.info("detector swapped: %s -> %s", getattr(old, "path", "?"), getattr(new, "path", "?"))
        return old

    def add_listener(self, fn: CameraListener) -> None:
        """``fn(camera, image, detections, names)`` after each frame, on the postprocess thread."""
        self._listeners.append(fn)

    def remove_listener(self, fn: CameraListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # --- reading ---------------------------------------------------------------------------------

    def batching(self) -> str:
        """How the cameras share the model, as the one line the status shows."""
        n = len(self._specs)
        dim = self.detector.backend.inputs[0].shape[0]
        if self.max_batch > 1:
            how = (
                "the model's fixed batch: fewer frames are padded"
                if isinstance(dim, int)
                else "dynamic batch"
            )
            return f"batched: up to {self.max_batch} frames a call ({how})"
        if self._batch_limit <= 1:
            return f"batching off: the {n} cameras take turns"
        if dim == 1:
            return f"the model takes one frame a call (fixed batch 1): the {n} cameras take turns"
        return f"the model does not run on a batch of 2: the {n} cameras take turns"

    def lane(self, name: str) -> CameraLane | None:
        self.spec(name)
        return self._lanes.get(name)

    def sample(self, name: str) -> Sample:
        lane = self.lane(name)
        if lane is None:
            return empty_sample(name)
        return lane.sample()

    def source_status(self, name: str) -> SourceStatus:
        lane = self.lane(name)
        if lane is None:
            return SourceStatus(
                uri=redact(self.spec(name).source), kind="", up=False, reason="camera disabled"
            )
        return lane.capture.status()

    def latest(self, name: str) -> tuple[np.ndarray, Any] | None:
        lane = self.lane(name)
        return lane.latest if lane is not None else None

    def _camera_states(self) -> list[CameraState]:
        states = []
        for name, spec in list(self._specs.items()):
            lane = self._lanes.get(name)
            if lane is None:
                states.append(CameraState(name, False, 0.0, 0.0, None, False, None))
                continue
            s = lane.stats.summary()
            cam = lane.health.current
            up = lane.capture.status().up
            states.append(
                CameraState(
                    name,
                    spec.enabled,
                    s.fps,
                    s.drop_rate,
                    s.confidence_avg,
                    up,
                    None if cam is None else cam.ok,
                )
            )
        return states

    # --- the shared threads ----------------------------------------------------------------------

    def _take(self, lanes: list[CameraLane], batch: list[Work]) -> None:
        """Add ready frames to ``batch`` round-robin from ``self._rr``, up to the batch limit, all of the
        first frame's tensor shape. Caller holds ``_cond``."""
        n = len(lanes)
        shape = batch[0].tensor.shape if batch else None
        taken = {w.lane for w in batch}
        for k in range(n):
            if len(batch) >= self.max_batch:
                break
            lane = lanes[(self._rr + k) % n]
            work = lane.ready
            if work is not None and work.detector is not self.detector:
                lane.ready = work = None  # prepared for a model swapped out since: dropped
                self._cond.notify_all()
            if work is None or lane in taken or (shape is not None and work.tensor.shape != shape):
                continue
            shape = work.tensor.shape
            lane.ready = None
            batch.append(work)
        if batch:
            last = batch[-1].lane
            self._rr = (lanes.index(last) + 1) % n if last in lanes else 0
            self._cond.notify_all()  # the lanes' preprocess threads wait for their ready place

    def _next_batch(self) -> list[Work] | None:
        batch: list[Work] = []
        with self._cond:
            while not self._closed:
                lanes = list(self._lanes.values())
                self._take(lanes, batch)
                if batch:
                    break
                self._cond.wait(0.5)
            if self._closed:
                return None
            if self.max_batch > 1:
                # Wait briefly for cameras that are delivering but not ready yet; never for a dead one.
                want = min(self.max_batch, sum(1 for ln in lanes if ln.capture.up))
                deadline = time.monotonic() + self.max_wait
                while len(batch) < want and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    self._take(list(self._lanes.values()), batch)
        return batch

    def _infer_loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    det = batch[0].detector
                    with self._infer_lock:  # swap_detector waits on it before handing the old model back
                        t0 = time.perf_counter()
                        if len(batch) == 1:
                            batch[0].outputs = det.infer(batch[0].tensor)
                        else:
                            outs = det.infer(np.concatenate([w.tensor for w in batch]))
                            for i, w in enumerate(batch):
                                w.outputs = [o[i : i + 1] for o in outs]
                        infer_s = time.perf_counter() - t0
                except Exception as err:
                    msg = f"inference failed: {type(err).__name__}: {redact(str(err))}"
                    log.error("%s", msg)
                    for w in batch:
                        w.lane.error = msg
                    continue
                self.camera_metrics.batch_size.observe(len(batch))
                for w in batch:
                    w.infer_s, w.batch, w.tensor = infer_s, len(batch), None
                self._post.put_wait(batch)
        except Closed:
            return

    def _postprocess_loop(self) -> None:
        try:
            while True:
                for work in self._post.get():
                    try:
                        self._finish(work)
                    except Exception as err:
                        work.lane.error = f"postprocess failed: {type(err).__name__}: {redact(str(err))}"
                        log.exception("postprocess failed on camera %s", work.lane.name)
        except Closed:
            return

    def _finish(self, work: Work) -> None:
        det, lane, item = work.detector, work.lane, work.item
        if not outputs_finite(work.outputs):  # as the one-camera pipeline: FieldtuiModelNonFinite sees it
            self.metrics.frames_nonfinite.inc()
        t0 = time.perf_counter()
        conf = lane.spec.conf if lane.spec.conf is not None else det.conf
        dets = post.postprocess(
            work.outputs, det.output_layout, work.lb, conf=conf, iou=det.iou, max_det=det.max_det
        )
        post_s = time.perf_counter() - t0
        now = time.monotonic()
        counts = record_frame(
            lane.stats, self.metrics, now, item, work.pre_s, work.infer_s, post_s, dets, det.names
        )
        cm = self.camera_metrics
        with self._cond:  # a camera removed meanwhile keeps no series (remove_camera pops it under this lock)
            if self._lanes.get(lane.name) is lane:
                cm.frames.labels(camera=lane.name).inc()
                cm.frame_latency.labels(camera=lane.name).observe(now - item.frame.ts)
                for cls, c in counts.items():
                    cm.detections.labels(camera=lane.name, class_name=cls).inc(c)
        lane.latest, lane.error = (item.frame.image, dets), None
        if (probe := self.latency_probe) is not None:
            probe(lane.name, now - item.frame.ts)
        for fn in list(self._listeners):
            try:
                fn(lane.name, item.frame.image, dets, det.names)
            except Exception:
                log.exception("frame listener %r failed", fn)
