"""The frame path for real: threads, onnxruntime, the demo model, files, a live MJPEG camera on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest

from agent.core.errors import SourceError
from agent.frames.pipeline import Pipeline
from agent.frames.sources.demo import DemoScene
from agent.inference.detector import Detector
from tests.mjpeg import MjpegCamera

SECRET = "hunter2"


def wait_until(pred: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``pred``; the timeout only keeps a broken pipeline from hanging the suite."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fieldtui-")]


class SlowDetector:
    """Our own Detector with an infer that takes longer: a test double of our code, not of a vendor SDK."""

    def __init__(self, inner: Detector, delay: float = 0.0) -> None:
        self.inner, self.delay = inner, delay
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def infer(self, tensor):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.inner.infer(tensor)


@pytest.fixture(scope="module")
def detector() -> Iterator[Detector]:
    det = Detector.load(None)
    yield det
    det.close()


@pytest.fixture
def make() -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(detector, uri: str, **kw) -> Pipeline:
        p = Pipeline(detector, uri, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()
    assert pipeline_threads() == []


def demo_video(path: Path, frames: int, size: tuple[int, int] = (320, 240)) -> Path:
    scene = DemoScene(*size, seed=1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(frames):
        writer.write(scene.render(i / 30)[0])
    writer.release()
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_source_gives_samples_with_detections(make, detector) -> None:
    p = make(detector, "demo:?fps=30")
    seen: list[tuple[tuple[int, ...], int, dict]] = []
    p.add_listener(lambda image, dets, names: seen.append((image.shape, len(dets), names)))
    p.start()
    wait_until(lambda: p.stats.frames_total >= 30 and p.sample().detections, what="30 frames with detections")
    s = p.sample()
    assert s.fps > 0
    assert set(s.detections) <= {"circle", "square", "triangle", "cross"} and sum(s.detections.values()) > 0
    assert s.confidence_avg is not None and 0.25 <= s.confidence_avg <= 1.0
    assert 0 < s.latency_p50_ms <= s.latency_p95_ms
    assert s.stages_ms.infer > 0 and s.stages_ms.preprocess > 0
    assert s.camera is not None and s.camera.ok
    status = p.status()
    assert status.state == "running"
    assert status.source.up and status.source.kind == "demo" and status.source.uri == "demo:?fps=30"
    assert (status.source.width, status.source.height) == (640, 480)
    assert status.model.layout == "yolov8"
    image, dets = p.latest()
    assert image.shape == (480, 640, 3)
    assert seen and seen[-1][0] == (480, 640, 3) and seen[-1][2] == detector.names
    reg = p.metrics.registry
    assert reg.get_sample_value("fieldtui_agent_frames_total") >= 30
    assert reg.get_sample_value("fieldtui_agent_source_up") == 1.0
    assert reg.get_sample_value("model_confidence_avg") > 0.25


def test_video_file_fast_processes_every_frame(make, detector, tmp_path: Path) -> None:
    path = demo_video(tmp_path / "clip.avi", 45)
    p = make(detector, str(path), fast=True)
    p.start()
    assert p.wait_finished(60)
    s = p.sample()
    assert s.frames_total == 45
    assert s.dropped_total == 0 and s.drop_rate == 0.0
    status = p.status()
    assert status.state == "stopped"
    assert not status.source.up and status.source.reason == "end of file"
    assert p.metrics.registry.get_sample_value("fieldtui_agent_frames_dropped_total") == 0


def test_slow_inference_on_a_file_still_drops_nothing(make, detector, tmp_path: Path) -> None:
    path = demo_video(tmp_path / "clip.avi", 12)
    slow = SlowDetector(detector, delay=0.05)
    p = make(slow, f"file:{path}", fast=True)
    p.start()
    assert p.wait_finished(60)
    assert slow.calls == 12
    assert p.stats.frames_total == 12 and p.stats.dropped_total == 0


def test_image_folder(make, detector, tmp_path: Path) -> None:
    scene = DemoScene(320, 240, seed=2)
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"frame{i:02d}.png"), scene.render(i * 0.5)[0])
    p = make(detector, str(tmp_path))
    p.start()
    assert p.wait_finished(60)
    assert p.stats.frames_total == 5
    assert p.status().source.kind == "images"


def test_live_frames_drop_when_inference_is_slower_than_capture(make, detector) -> None:
    slow = SlowDetector(detector, delay=0.12)  # ~8 fps of inference against a 30 fps camera
    p = make(slow, "demo:?fps=30")
    p.start()
    wait_until(lambda: p.stats.frames_total >= 6, what="6 frames")
    s = p.sample()
    assert s.dropped_total > 0 and s.drop_rate > 0.3
    reg = p.metrics.registry
    assert reg.get_sample_value("fieldtui_agent_frames_dropped_total") == p.stats.dropped_total
    assert reg.get_sample_value("frame_drop_rate") > 0.3


def test_lost_stream_reconnects_and_says_why(make, detector) -> None:
    with MjpegCamera() as cam:
        p = make(detector, cam.url(f"viewer:{SECRET}"))
        p.start()
        wait_until(lambda: p.state == "running", what="running")
        cam.mode = "down"  # the camera drops the stream and refuses new ones
        wait_until(lambda: p.state == "reconnecting", what="reconnecting")
        status = p.status()
        assert not status.source.up
        assert status.source.reason.startswith(f"stream from {cam.url('***')} ended")
        wait_until(
            lambda: (p.status().source.reason or "").startswith("could not open"), what="a failed retry"
        )
        reason = p.status().source.reason
        assert "check the address and that the camera is on the network" in reason
        assert SECRET not in reason and SECRET not in status.model_dump_json()
        assert p.metrics.registry.get_sample_value("fieldtui_agent_source_up") == 0.0
        before = p.stats.frames_total
        cam.mode = "up"
        wait_until(lambda: p.state == "running" and p.stats.frames_total > before + 5, what="frames again")
        status = p.status()
        assert status.source.up and status.source.reason is None and status.source.reconnects >= 1


def test_stalled_stream_is_reported_as_stalled(make, detector, monkeypatch) -> None:
    monkeypatch.setattr("agent.frames.sources.opencv.READ_TIMEOUT_S", 1.0)
    with MjpegCamera() as cam:
        p = make(detector, cam.url())
        p.start()
        wait_until(lambda: p.state == "running", what="running")
        cam.mode = "stall"  # connected, but no more frames
        wait_until(lambda: p.state == "reconnecting", what="reconnecting")
        reason = p.status().source.reason
        assert reason.startswith("no frame for 1 s from http://127.0.0.1:") and reason.endswith(
            "stream stalled"
        )
        cam.mode = "up"
        wait_until(lambda: p.state == "running", what="running again")


def test_unreachable_source_at_start(make, detector) -> None:
    uri = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/live"
    p = make(detector, uri)
    with pytest.raises(SourceError) as err:
        p.start()
    assert SECRET not in str(err.value) and "rtsp://***@127.0.0.1" in str(err.value)
    assert p.state == "failed" and pipeline_threads() == []
    # A device that boots before its camera: keep trying instead.
    p.start(retry=True)
    assert p.state == "reconnecting"
    assert p.status().source.reason.startswith("could not open rtsp://***@127.0.0.1")


def test_swap_detector_between_frames_without_restart(make, detector) -> None:
    first = SlowDetector(detector)
    second = SlowDetector(Detector.load(None))
    try:
        p = make(first, "demo:?fps=30")
        p.start()
        wait_until(lambda: p.stats.frames_total >= 5, what="5 frames")
        threads = {t.ident for t in pipeline_threads()}
        assert p.swap_detector(second) is first
        calls_at_swap = first.calls
        wait_until(lambda: second.calls >= 10, what="frames on the new detector")
        assert first.calls == calls_at_swap  # nothing ran on the old one once swap returned
        assert p.detector is second and p.state == "running"
        assert {t.ident for t in pipeline_threads()} == threads
    finally:
        second.inner.close()


def test_bad_new_source_keeps_the_old_one(make, detector) -> None:
    p = make(detector, "demo:?fps=30")
    p.start()
    wait_until(lambda: p.stats.frames_total >= 3, what="3 frames")
    with pytest.raises(SourceError) as err:
        p.set_source(f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/live")
    assert SECRET not in str(err.value)
    with pytest.raises(SourceError, match="unknown source scheme"):
        p.set_source("gopher://camera")
    before = p.stats.frames_total
    wait_until(lambda: p.stats.frames_total > before + 5, what="frames from the old source")
    status = p.status()
    assert status.state == "running" and status.source.uri == "demo:?fps=30" and status.source.up


def test_set_source_switches_and_restarts_after_end_of_file(make, detector, tmp_path: Path) -> None:
    path = demo_video(tmp_path / "clip.avi", 10)
    p = make(detector, "demo:?fps=30", fast=True)
    p.start()
    wait_until(lambda: p.stats.frames_total >= 3, what="3 frames")
    p.set_source(str(path))
    assert p.status().source.kind == "file"
    assert p.wait_finished(60) and p.state == "stopped"
    p.set_source("demo:?fps=30&seed=4")
    wait_until(lambda: p.state == "running", what="running on the demo again")
    assert p.status().source.uri == "demo:?fps=30&seed=4"


def test_faults_lower_confidence_and_move_camera_health(make, detector) -> None:
    """The issue's fault test: what a technician sees when the camera goes bad, phase by phase."""
    phases = [("clean", 2.5), ("freeze", 5.0), ("blur", 6.5), ("dark", 8.0), ("cover", 9.5)]
    uri = "demo:?fps=30&seed=0&faults=freeze@2.5-5,blur@5-6.5,dark@6.5-8,cover@8-9.5"
    p = make(detector, uri)
    p.stats.window = 0.8  # each reading covers the end of one phase only
    p.start()
    t0 = time.monotonic()
    readings = {}
    for name, end in phases:
        time.sleep(max(0.0, t0 + end - 0.1 - time.monotonic()))
        conf = p.metrics.registry.get_sample_value("model_confidence_avg")
        readings[name] = (conf or 0.0, p.sample().camera)  # absent = nothing detected at all
    clean_conf, clean = readings["clean"]
    assert clean_conf > 0.5 and clean.ok and clean.sharpness_ratio is not None
    assert readings["freeze"][1].frozen and not readings["freeze"][1].ok
    for fault in ("blur", "dark", "cover"):
        conf, cam = readings[fault]
        assert conf < clean_conf - 0.05, (fault, conf, clean_conf)
        assert not cam.ok
    assert readings["blur"][1].sharpness_ratio < 0.5
    assert readings["dark"][1].brightness < clean.brightness / 3
    assert readings["cover"][1].covered
