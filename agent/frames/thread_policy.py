"""How many threads inference gets: measured on the live pipeline, not assumed.

"Every core but one" is right for a 4 ms model, where decoding and preprocessing cost as much as
inference and need a core of their own, and wrong for a 180 ms model, where inference is nearly all of
the work and a third of the machine then sits idle. Which one a device runs is only known once the
model, the machine and the source are known, so the policy measures: the pipeline runs a short trial
with each candidate (intra-op threads x ONNX Runtime's ``session.intra_op.allow_spinning`` on/off),
counting the frames it finishes, and keeps the configuration with the highest FPS. Where several are
as fast (within :data:`TIE`: a live source at 30 fps is the limit, not the model), the one that burns
the least CPU per frame wins.

The trials run on the serving pipeline itself (the runtime's session is replaced between trials, see
``OnnxRuntimeBackend.reconfigure``), so nothing stops serving and the figures include what the other
stages really cost; they happen on the tuner's own thread, after the first frames, not before the
agent starts. They run again when a model is swapped in and when the frame size moves by more than
:data:`RESIZE_FACTOR` in area. A ``threads`` setting (config.toml, ``--threads``, ``PUT
/v1/pipeline/threads``) fixes the count instead.

Several cameras (agent/frames/cameraset.py) share one session, so there is still one count to choose,
and it is chosen the same way on what the cameras do together: a trial counts the frames *every*
camera finishes (a frame of any camera is a frame), and drops are every camera's. With N cameras, N
capture and preprocessing threads compete with the intra-op pool for the same cores, so the count that
serves one camera best is often too many for three; measuring on all of them at once finds that. For
live cameras a configuration keeps up when all of them together drop at most :data:`KEEP_UP` of their
frames, and the cheapest of those wins. A camera added, removed or switched does not measure again
(only a model swap and a frame-size change do, on the first camera's size); ``PUT /v1/pipeline/threads``
asks for a new measurement or fixes the count, for every camera at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from agent.core.errors import ModelError
from fieldtui.protocol import ThreadPolicy, ThreadTrial

log = logging.getLogger("fieldtui.agent.threads")

TIE = 0.03  # FPS within 3 % of the best are the same figure on a shared machine
CONTENDER = 0.85  # after one pass, configurations within 15 % of the best are measured once more
KEEP_UP = 0.05  # live source: a configuration that drops at most 5 % of the frames keeps up
RESIZE_FACTOR = 2.0  # a frame area change beyond this (either way) measures again
WARMUP_FRAMES = 2  # the first frames after a new session pay for its allocations
MIN_FRAMES, MIN_S = 8, 0.25  # a trial ends after both...
SLOW_FRAMES, MAX_S = 4, 1.2  # ...or, for a slow model, after this many frames once MAX_S passed
GIVE_UP_S = 5.0  # no frames this long: the source stalled; try again later


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what a cgroup or taskset leaves us
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def candidate_threads(n: int) -> list[int]:
    """1..n on small machines; on big ones 1-4 and then doubling, plus n (bounded trial count)."""
    picks = {t for t in (1, 2, 3, 4) if t <= n}
    t = 8
    while t < n:
        picks.add(t)
        t *= 2
    picks.add(n)
    return sorted(picks)


def candidates(n: int) -> list[tuple[int, bool]]:
    """(threads, spinning) to try. With one intra-op thread ONNX Runtime runs the work on the calling
    thread and has no pool to spin, so spinning is only tried with two threads or more."""
    return [(t, s) for s in (False, True) for t in candidate_threads(n) if t > 1 or not s]


def merge(runs: list[ThreadTrial]) -> ThreadTrial:
    """One configuration's trials as one: all its frames over all its time."""
    frames = sum(r.frames for r in runs)
    seconds = sum(r.frames / r.fps for r in runs)
    cpu = sum((r.cpu_ms_per_frame or 0.0) * r.frames for r in runs)
    first = runs[0]
    return ThreadTrial(threads=first.threads, spinning=first.spinning, fps=round(frames / seconds, 2),
                       cpu_ms_per_frame=round(cpu / frames, 2), frames=frames,
                       dropped=sum(r.dropped for r in runs))  # fmt: skip


def release_freed_memory() -> None:
    """Hand the heap the discarded trial sessions freed back to the system (glibc keeps it otherwise,
    about 10 MB of resident memory after a measurement on the demo model). No-op elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def choose(trials: list[ThreadTrial], live: bool = False) -> ThreadTrial:
    """The fastest trial; among those within :data:`TIE` of it, the one using the least CPU.

    A live source paces the pipeline: every configuration that keeps up delivers the camera's rate,
    and a short window's FPS then measures the camera's jitter, not the configuration. So for a live
    source the trials that dropped (almost) no frames are the fast ones, and the cheapest of them wins;
    when none keeps up, the fastest does."""
    if live:
        keeping_up = [t for t in trials if t.dropped <= max(1, int(KEEP_UP * (t.frames + t.dropped)))]
        if keeping_up:
            return min(keeping_up, key=lambda t: (t.cpu_ms_per_frame or 0.0, -t.fps))
    best = max(t.fps for t in trials)
    close = [t for t in trials if t.fps >= best * (1 - TIE)]
    return min(close, key=lambda t: (t.cpu_ms_per_frame or 0.0, -t.fps))


class ThreadTuner:
    """Owns the thread policy of one pipeline: measures on request on its own thread and applies the
    winner; ``status()`` is what /v1/status shows. Thread-safe."""

    def __init__(self, pipeline: Any, fixed: int | None = None) -> None:
        self.pipeline = pipeline
        self.fixed = fixed
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._why: str | None = None
        self._thread: threading.Thread | None = None
        self._status = ThreadPolicy(mode="default", reason="not measured yet")
        self._area: int | None = None

    # --- control ---------------------------------------------------------------------------------

    def status(self) -> ThreadPolicy:
        with self._lock:
            return self._status.model_copy()

    def schedule(self, why: str) -> None:
        """Measure (or apply the fixed count) soon, on the tuner's thread."""
        with self._lock:
            self._why = why
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="fieldtui-threads", daemon=True)
                self._thread.start()
        self._wake.set()

    def set_fixed(self, threads: int | None) -> ThreadPolicy:
        """Fix the thread count (None: measure again); applied at once when a model is serving."""
        self.fixed = threads
        if threads:  # at once, on the caller's thread; a measurement under way stops at its next step
            self._apply("threads setting")
        else:
            self._set(mode="measuring", reason="measuring (requested)", trials=[], fps=None)
            self.schedule("measuring requested")
        return self.status()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    # --- the tuner's thread ------------------------------------------------------------------------

    def _set(self, **fields: Any) -> None:
        with self._lock:
            self._status = self._status.model_copy(update=fields)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(1.0):
                self._wake.clear()
                with self._lock:
                    why, self._why = self._why, None
                if why is not None:
                    try:
                        self._apply(why)
                    except ModelError as err:  # the model was closed under us (swapped): measured next
                        log.info("thread policy: %s", err)
                    except Exception:  # a failed measurement must never stop serving
                        log.exception("thread policy: measuring failed; the runtime keeps its threads")
                        self._set(mode="default", reason="measuring failed: see the agent log")
            elif self._status.mode == "measured":
                self._watch_frame_size()

    def _backend(self) -> Any:
        return getattr(self.pipeline.detector, "backend", None)

    def _apply(self, why: str) -> None:
        backend = self._backend()
        if backend is None or not hasattr(backend, "reconfigure"):
            key = getattr(type(backend), "key", "this backend")
            self._set(mode="n/a", threads=None, spinning=None, trials=[], fps=None,
                      reason=f"{key} has no intra-op thread pool to size")  # fmt: skip
            return
        if self.fixed:
            if (backend.threads, backend.spinning) != (self.fixed, False):
                backend.reconfigure(self.fixed, False)
                release_freed_memory()
            self._set(mode="fixed", threads=self.fixed, spinning=False, trials=[], fps=None,
                      reason=f"set by the technician ({why})")  # fmt: skip
            log.info("inference threads: %d (fixed by the threads setting)", self.fixed)
            return
        if getattr(backend, "threads_requested", None):  # the model was loaded with a count: keep it
            self._set(mode="fixed", threads=backend.threads, spinning=backend.spinning, trials=[], fps=None,
                      reason="set when the model was loaded")  # fmt: skip
            return
        self._measure(backend, why)

    def _counts(self) -> tuple[int, int]:
        """(frames finished, frames dropped) of every camera the pipeline runs (one, or several)."""
        each = getattr(self.pipeline, "camera_stats", None)
        stats = each() if each is not None else [self.pipeline.stats]
        return sum(s.frames_total for s in stats), sum(s.dropped_total for s in stats)

    def _frames(self) -> int:
        return self._counts()[0]

    def _live(self) -> bool:
        live = getattr(self.pipeline, "live", None)
        return bool(live if live is not None else getattr(self.pipeline.capture, "live", False))

    def _wait_frames(self, n: int, limit_s: float) -> bool:
        start, deadline = self._frames(), time.monotonic() + limit_s
        while self._frames() < start + n:
            if self._stop.is_set() or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _trial(self, backend: Any, threads: int, spinning: bool) -> ThreadTrial | None:
        """Run the pipeline with (threads, spinning) and time the frames it finishes: the clock is
        read as each frame is done (a pipeline listener), so the FPS is frames / the time between
        the first and last of them, not a polling window's guess."""
        backend.reconfigure(threads, spinning)
        if not self._wait_frames(WARMUP_FRAMES, GIVE_UP_S):
            return None
        done: list[tuple[float, float]] = []  # (wall, process CPU) as each frame finished

        def finished(*_: Any) -> None:
            done.append((time.perf_counter(), time.process_time()))

        dropped0 = self._counts()[1]
        # every camera's frames (a one-camera pipeline's listener hears its one camera)
        listen = getattr(self.pipeline, "add_camera_listener", self.pipeline.add_listener)
        listen(finished)
        try:
            t0 = time.perf_counter()
            while True:
                time.sleep(0.02)
                frames, elapsed = len(done) - 1, time.perf_counter() - t0
                if (frames >= MIN_FRAMES and elapsed >= MIN_S) or (
                    frames >= SLOW_FRAMES and elapsed >= MAX_S
                ):
                    break
                if self._stop.is_set() or (elapsed >= GIVE_UP_S and frames < SLOW_FRAMES):
                    return None
        finally:
            self.pipeline.remove_listener(finished)
        (w0, c0), (w1, c1) = done[0], done[frames]
        return ThreadTrial(
            threads=threads,
            spinning=spinning,
            fps=round(frames / (w1 - w0), 2),
            cpu_ms_per_frame=round((c1 - c0) * 1e3 / frames, 2),
            frames=frames,
            dropped=self._counts()[1] - dropped0,
        )

    def _measure(self, backend: Any, why: str) -> None:
        # wait for frames to flow first (a camera that is still connecting, a paused source)
        self._set(mode="measuring", reason=f"measuring ({why})", trials=[])
        if not self._wait_frames(1, 60.0):
            self._set(mode="default", threads=backend.threads, spinning=backend.spinning,
                      reason="no frames to measure on yet; will measure when the model or source changes")  # fmt: skip
            return
        started = time.monotonic()
        before = (backend.threads, backend.spinning)
        runs: dict[tuple[int, bool], list[ThreadTrial]] = {}
        plan = candidates(cores())
        # One pass over every candidate; then the close ones again in reverse order, so a load that
        # came or went meanwhile (a shared machine) weighs on each of them alike.
        for second in (False, True):
            if second:
                best_fps = max(merge(r).fps for r in runs.values())
                plan = [c for c in reversed(plan) if merge(runs[c]).fps >= best_fps * CONTENDER]
                if len(plan) < 2:
                    break
            for threads, spinning in plan:
                if self._backend() is not backend:  # another model was swapped in: it is measured next
                    return
                if self.fixed:  # set meanwhile: it wins over the trial that may have just run
                    backend.reconfigure(self.fixed, False)
                    return
                trial = self._trial(backend, threads, spinning)
                if trial is None:
                    backend.reconfigure(*before)
                    self._set(mode="default", threads=before[0], spinning=before[1],
                              reason="frames stopped while measuring; will measure again on the next change")  # fmt: skip
                    return
                runs.setdefault((threads, spinning), []).append(trial)
                self._set(trials=[merge(r) for r in runs.values()])
        trials = [merge(r) for r in runs.values()]
        if self.fixed:
            backend.reconfigure(self.fixed, False)
            return
        best = choose(trials, live=self._live())
        backend.reconfigure(best.threads, best.spinning)
        time.sleep(0.2)  # let a frame still inside a trial session finish and drop it
        release_freed_memory()
        took = time.monotonic() - started
        size = self._frame_size()
        self._area = size[0] * size[1] if size else None
        others = ", ".join(f"{t.threads}{'s' if t.spinning else ''} {t.fps:.1f}" for t in trials)
        reason = (
            f"{best.threads} thread{'s' * (best.threads != 1)}, spinning {'on' if best.spinning else 'off'}: "
            f"{best.fps:.1f} fps, the best of {len(trials)} measured in {took:.1f} s ({why})"
        )
        log.info("inference threads: %s; fps by threads (s = spinning): %s", reason, others)
        self._set(mode="measured", threads=best.threads, spinning=best.spinning, fps=best.fps, trials=trials,
                  reason=reason, frame_size=list(size) if size else None, took_s=round(took, 2),
                  measured_at=time.time())  # fmt: skip

    def _frame_size(self) -> tuple[int, int] | None:
        latest = self.pipeline.latest()
        if latest is None:
            return None
        h, w = latest[0].shape[:2]
        return int(w), int(h)

    def _watch_frame_size(self) -> None:
        size = self._frame_size()
        if size is None or not self._area:
            return
        area = size[0] * size[1]
        if area > self._area * RESIZE_FACTOR or area * RESIZE_FACTOR < self._area:
            self._area = area
            self.schedule(f"frame size changed to {size[0]}x{size[1]}")
