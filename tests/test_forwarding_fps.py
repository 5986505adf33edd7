"""A hanging Trio must not slow the pipeline: FPS with forwarding on (every frame qualifies, the queue
full, the cloud never answering) against forwarding off, in the same pipeline and run, interleaved.

The source is our own endless, deterministic one, so frames per second measure the pipeline and
nothing else. The machine is shared and noisy, so the two conditions alternate in short windows in
ABBA order (drift cancels) and the verdict is the median of the per-pair ratios (a load spike in one
window cannot decide it). Two views: a camera-paced pipeline (100 fps, live) held to the issue's 3%,
and an unpaced one (~1000 fps) where the listener's own cost per frame is held to under 3% of the
frame period, with the FPS and CPU-per-frame ratios printed (at that rate on this machine they swing
by more than 3% between seconds, forwarding or not).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.core.home import AgentHome
from agent.forwarding.forwarder import Forwarder
from agent.forwarding.trio import KEY_ENV
from agent.frames.pipeline import Pipeline
from agent.frames.sources import Frame, Source
from agent.inference.detector import Detector
from fieldtui.protocol import ForwardingRules, ForwardingUpdate
from tests.fake_trio import FakeTrio, hang

PAIRS = 8
ROUNDS = 3
CAMERA_FPS = 100.0
WINDOW_S = 0.3
QUEUE_SIZE = 4


class EndlessSource(Source):
    """640x480 frames from a fixed cycle of 8, forever. Unpaced and non-live by default (every frame
    processed, as fast as the pipeline goes); ``paced(fps)`` makes a live camera at that rate."""

    kind = "test"
    live = False
    fps: float | None = None

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        rng = np.random.default_rng(0)
        self._frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
        self._n = 0
        self._next = 0.0

    @classmethod
    def paced(cls, fps: float) -> type[EndlessSource]:
        return type("PacedSource", (cls,), {"live": True, "fps": fps})

    def open(self) -> None:
        self._n, self._next = 0, time.monotonic()

    def read(self) -> Frame:
        if self.fps:
            self._next += 1.0 / self.fps
            time.sleep(max(0.0, self._next - time.monotonic()))
        self._n += 1
        return Frame(self._frames[self._n % 8], time.monotonic(), self._n - 1)

    @property
    def size(self) -> tuple[int, int]:
        return 640, 480


@pytest.fixture
def make_pipeline(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Pipeline]]:
    made: list[tuple[Pipeline, Detector]] = []

    def make(source: type[EndlessSource]) -> Pipeline:
        def open_source(uri: str) -> EndlessSource:
            src = source(uri)
            src.open()
            return src

        monkeypatch.setattr("agent.frames.capture.open_source", open_source)
        detector = Detector.load(tiny_model, threads=1)  # no spinning thread pool: CPU follows frames
        p = Pipeline(detector, "endless:", fast=True)
        made.append((p, detector))
        return p

    yield make
    for p, detector in made:
        p.stop()
        detector.close()


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[tuple[FakeTrio, Forwarder]]:
    """A forwarder to a Trio that never answers, with rules every frame passes; enabled."""
    trio = FakeTrio().__enter__()
    fwd = Forwarder(
        AgentHome(tmp_path / "home"), env={KEY_ENV: "sk-test-key-0123456789"}, defaults={"base_url": trio.url}
    )
    try:
        every_frame = ForwardingRules(cooldown_s=0.0, rate_per_minute=600000.0, burst=100)
        fwd.update(
            ForwardingUpdate(
                base_url=trio.url, mode="frame", timeout_s=60.0, queue_size=QUEUE_SIZE, rules=every_frame
            )
        )
        fwd.start()
        trio.reply(hang())
        yield trio, fwd
    finally:
        trio.close()  # releases the hung request, so the worker can end
        fwd.close()


def _window(p: Pipeline) -> tuple[float, float]:
    """(frames per second, CPU milliseconds per frame) over one window."""
    f0, t0, c0 = p.stats.frames_total, time.monotonic(), time.process_time()
    time.sleep(WINDOW_S)
    f1, t1, c1 = p.stats.frames_total, time.monotonic(), time.process_time()
    frames = max(1, f1 - f0)
    return frames / (t1 - t0), (c1 - c0) * 1000.0 / frames


def _measure(p: Pipeline, fwd: Forwarder) -> tuple[float, list[float], float]:
    """One round: the median FPS ratio (hanging / off) over ABBA-interleaved window pairs, the ratios,
    and the median CPU-per-frame ratio."""
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for i in range(PAIRS):
        for enabled in (False, True) if i % 2 == 0 else (True, False):  # ABBA: slow drift cancels
            fwd.update(ForwardingUpdate(enabled=enabled))
            (on if enabled else off).append(_window(p))
            assert fwd.state().stats.queue_depth <= QUEUE_SIZE
    ratios = [b[0] / a[0] for a, b in zip(off, on, strict=True)]
    cpu = statistics.median(b[1] / a[1] for a, b in zip(off, on, strict=True))
    print(
        f"\nfps off {statistics.median(a[0] for a in off):.0f}, hanging Trio "
        f"{statistics.median(b[0] for b in on):.0f}: median ratio {statistics.median(ratios):.3f} "
        f"(pairs {min(ratios):.2f}..{max(ratios):.2f}); CPU per frame ratio {cpu:.3f}"
    )
    return statistics.median(ratios), ratios, cpu


def _run(p: Pipeline, fwd: Forwarder, listener: Callable[..., None]) -> None:
    p.add_listener(listener)
    p.start()
    deadline = time.monotonic() + 30
    while p.stats.frames_total < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.stats.frames_total >= 50, "the pipeline did not get going"
    _window(p)  # warm-up, not counted: the first forward, the hung request, the queue filling


def _bounded(trio: FakeTrio, fwd: Forwarder) -> None:
    stats = fwd.state().stats
    assert stats.queue_depth == QUEUE_SIZE and stats.queue_capacity == QUEUE_SIZE
    assert stats.dropped["queue_full"] > 0 and stats.forwards == {}  # nothing came back
    assert len(trio.requests) == 1  # the worker sits on one hung request; nothing piles up


def test_hanging_trio_keeps_the_camera_rate(make_pipeline, hanging) -> None:
    """The issue's criterion on a camera-paced pipeline (live, 100 fps, as a device runs): FPS with a
    hanging Trio within 3% of forwarding off. One round's median can miss by load noise alone, so up
    to ROUNDS rounds; a listener that waited on the cloud would miss by far in every one."""
    trio, fwd = hanging
    p = make_pipeline(EndlessSource.paced(CAMERA_FPS))
    _run(p, fwd, fwd.on_frame)
    rounds = [_measure(p, fwd)]
    while rounds[-1][0] < 0.97 and len(rounds) < ROUNDS:
        rounds.append(_measure(p, fwd))
    fwd.update(ForwardingUpdate(enabled=True))
    _window(p)
    _bounded(trio, fwd)
    assert max(r[0] for r in rounds) >= 0.97, f"a hanging Trio slowed the pipeline: {rounds}"


def test_listener_cost_on_an_unpaced_pipeline(make_pipeline, hanging) -> None:
    """As fast as the pipeline goes (~1000 fps with the tiny model): what the listener costs the
    postprocess thread per frame, against the frame period, with the queue full and Trio hanging.
    The FPS and CPU-per-frame ratios are printed for the record: at this rate, on a shared 2-core
    machine, they swing by more than the 3% from one second to the next."""
    trio, fwd = hanging
    calls: list[float] = []

    def timed(image, detections, names) -> None:
        t0 = time.perf_counter()
        fwd.on_frame(image, detections, names)
        if fwd.settings.enabled:
            calls.append(time.perf_counter() - t0)

    p = make_pipeline(EndlessSource)
    _run(p, fwd, timed)
    _measure(p, fwd)
    fwd.update(ForwardingUpdate(enabled=True))
    _window(p)
    _bounded(trio, fwd)
    fps = p.stats.frames_total / max(1e-9, time.time() - (p.started_at or 0.0))
    share = statistics.median(calls) * fps
    print(f"listener median {statistics.median(calls) * 1e6:.1f} us per frame at {fps:.0f} fps = {share:.2%}")
    assert share < 0.03, f"the listener takes {share:.1%} of each frame's time"
