"""Live sources against software nobody here wrote: GStreamer's RTSP server streaming an H.264 clip made
by ffmpeg (with and without a password, killed and restarted, frozen with SIGSTOP), and ffmpeg's own
MJPEG-over-HTTP server. Skipped, with the reason, where gst-rtsp-server or ffmpeg cannot run.

bench/cameras.py prints the figures (stall report and reconnect seconds) these tests only bound.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cli.headless import format_status
from agent.core.errors import SourceError
from agent.frames.pipeline import Pipeline
from agent.frames.sources import open_source
from agent.frames.sources.base import STALL_S
from agent.inference.detector import Detector
from tests.rtsp import FfmpegMjpeg, RtspServer, ffmpeg_missing, h264_clip, rtsp_missing

PASSWORD = "s3cr3t-pw"
NETWORK = "check the address and that the camera is on the network"


def wait_until(pred: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``pred``; returns the seconds it took (the timeout only keeps a broken source from hanging)."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if reason := rtsp_missing():
        pytest.skip(reason)
    return h264_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=30)


@pytest.fixture(scope="module")
def detector() -> Iterator[Detector]:
    with Detector.load(None) as det:
        yield det


@pytest.fixture
def pipelines() -> Iterator[list[Pipeline]]:
    made: list[Pipeline] = []
    yield made
    for p in made:
        p.stop()


@pytest.mark.parametrize("digest", [False, True], ids=["basic", "digest"])
def test_wrong_rtsp_password_is_reported_as_such_never_as_the_network(clip, digest):
    with RtspServer(clip, user="admin", password=PASSWORD, digest=digest) as server:
        with pytest.raises(SourceError) as refused:
            open_source(server.url("admin:wrong-pw"))
        message = str(refused.value)
        assert "the camera refused the user name or password" in message
        assert NETWORK not in message and "wrong-pw" not in message and "admin" not in message

        with pytest.raises(SourceError, match="the camera asks for a user name and password"):
            open_source(server.url())

        with open_source(server.url(f"admin:{PASSWORD}")) as source:  # the right one opens and streams
            frames = [source.read() for _ in range(5)]
            assert source.kind == "rtsp" and source.size == (320, 240)
            assert all(f.image.shape == (240, 320, 3) for f in frames)


def test_missing_stream_path_and_closed_port_are_told_apart(clip):
    with RtspServer(clip) as server:
        with pytest.raises(SourceError, match=r"no stream at /nothing-here \(404 Not Found\)"):
            open_source(f"rtsp://127.0.0.1:{server.port}/nothing-here")
        port = server.port
    with pytest.raises(SourceError, match=r"nothing answers RTSP at 127.0.0.1:\d+ \(connection refused\)"):
        open_source(f"rtsp://127.0.0.1:{port}/live")


def test_frozen_rtsp_server_is_reported_stalled_and_reconnected(clip, detector, pipelines):
    """SIGSTOP: the TCP connection stays up and nothing more comes. It went unreported for 15 s (status
    running, up, fps 0, no reason): now it is reported after the one stall timeout every live source
    shares, with the reason, and the capture reconnects."""
    with RtspServer(clip) as server:
        p = Pipeline(detector, server.url())
        pipelines.append(p)
        p.start()
        wait_until(lambda: p.stats.frames_total > 10, 30, "frames")
        server.freeze()
        frozen_at = time.monotonic()
        # A second of buffered frames drains first; then STALL_S of silence; a little slack for CI.
        wait_until(lambda: not p.status().source.up, STALL_S + 4, "the stall to be reported")
        reason = p.status().source.reason
        assert "stream stalled" in reason, reason
        wait_until(lambda: p.state == "reconnecting", STALL_S + 4, "reconnecting")
        assert time.monotonic() - frozen_at < 3 * STALL_S
        server.thaw()
        wait_until(lambda: p.state == "running" and p.status().source.up, 30, "frames again after the thaw")


def test_rtsp_server_killed_and_restarted_is_reconnected(clip, detector, pipelines):
    server = RtspServer(clip).start()
    try:
        p = Pipeline(detector, server.url())
        pipelines.append(p)
        p.start()
        wait_until(lambda: p.stats.frames_total > 5, 30, "frames")
        server.kill()
        wait_until(lambda: p.state == "reconnecting", STALL_S + 4, "reconnecting")
        wait_until(lambda: "connection refused" in (p.status().source.reason or ""), 20, "the refused reason")
        line = format_status(p.status())  # what `fieldtui-agent run` prints during the outage
        assert "camera no frames" in line and "camera ok" not in line and "connection refused" in line, line
        server.start()  # the same port, as a camera that rebooted
        before = p.stats.frames_total
        wait_until(lambda: p.state == "running" and p.stats.frames_total > before + 5, 30, "frames again")
        assert p.status().source.reconnects >= 1
    finally:
        server.kill()


def test_ffmpeg_mjpeg_server_is_read_and_its_freeze_reported(detector, pipelines):
    if reason := ffmpeg_missing():
        pytest.skip(reason)
    with FfmpegMjpeg() as server:
        p = Pipeline(detector, server.url())
        pipelines.append(p)
        p.start()
        wait_until(lambda: p.stats.frames_total > 5, 30, "frames")
        assert p.status().source.kind == "http" and p.status().source.width == 320
        server.freeze()
        wait_until(lambda: not p.status().source.up, STALL_S + 4, "the stall to be reported")
        assert "stream stalled" in p.status().source.reason


def test_ffmpeg_timeouts_follow_the_libavformat_version():
    from agent.frames.sources.opencv import ffmpeg_capture_options

    us = int(STALL_S * 1_000_000)
    # FFmpeg 5 (libavformat 59) renamed rtsp's socket timeout stimeout -> timeout; before, "timeout"
    # meant "listen for a connection", which would turn the camera client into a server.
    assert ffmpeg_capture_options(STALL_S, 62) == f"rtsp_transport;tcp|timeout;{us}|rw_timeout;{us}"
    assert ffmpeg_capture_options(STALL_S, 58) == f"rtsp_transport;tcp|stimeout;{us}|rw_timeout;{us}"


def test_capture_options_are_set_before_the_first_capture_and_a_users_own_are_kept(monkeypatch):
    import cv2

    import agent.frames.sources.opencv as opencv

    monkeypatch.setattr(opencv, "_options_set", False)
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    opencv.quiet_cv2()

    major = int(opencv._AVFORMAT.search(cv2.getBuildInformation()).group(1))
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == opencv.ffmpeg_capture_options(STALL_S, major)
    monkeypatch.setattr(opencv, "_options_set", False)
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp")
    opencv.quiet_cv2()
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;udp"
