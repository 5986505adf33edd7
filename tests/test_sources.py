"""Sources: every accepted URI form, the errors for the rest, and credentials never shown."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.core.errors import SourceError
from agent.frames.sources import make_source, open_source, redact
from agent.frames.sources.base import SourceLost
from agent.frames.sources.files import ImageFolderSource, VideoFileSource
from tests.mjpeg import MjpegCamera

SECRET = "hunter2"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_video(path: Path, n: int, size: tuple[int, int] = (160, 120), fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        frame = np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8)
        cv2.putText(frame, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsp://admin:hunt@r2@cam/live", "rtsp://***@cam/live"),
        ("http://cam/snap.mjpg?user=admin&password=hunter2", "http://cam/snap.mjpg?user=admin&password=***"),
        ("https://cam/v?token=abc&ch=1&api_key=k", "https://cam/v?token=***&ch=1&api_key=***"),
        ("could not open rtsp://u:p@h/x: refused", "could not open rtsp://***@h/x: refused"),
        ("demo:?faults=blur@20", "demo:?faults=blur@20"),
        ("/data/clips/a@b.mp4", "/data/clips/a@b.mp4"),
    ],
)
def test_redact_masks_credentials_and_nothing_else(uri: str, shown: str) -> None:
    assert redact(uri) == shown


def test_unknown_scheme_says_what_is_accepted() -> None:
    with pytest.raises(SourceError) as err:
        make_source("ftp://user:hunter2@host/video")
    msg = str(err.value)
    assert "unknown source scheme 'ftp'" in msg
    assert "rtsp://" in msg and "usb:N" in msg and "demo:" in msg
    assert SECRET not in msg


def test_missing_file_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or folder") as err:
        open_source(str(tmp_path / "nope.mp4"))
    assert "rtsp://" in str(err.value)


@pytest.mark.parametrize("uri", ["usb:", "usb:cam", "usb:-1"])
def test_bad_usb_form(uri: str) -> None:
    with pytest.raises(SourceError, match="usb:N"):
        make_source(uri)


def test_usb_camera_that_is_not_there() -> None:
    with pytest.raises(SourceError, match=r"could not open usb:63 \(/dev/video63\)"):
        open_source("usb:63")


def test_unreachable_rtsp_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    uri = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/stream?token=t0ps3cret"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as err:
        open_source(uri)
    msg = str(err.value)
    assert msg.startswith("could not open rtsp://***@127.0.0.1:")
    assert "check the address and that the camera is on the network" in msg
    assert SECRET not in msg and "t0ps3cret" not in msg
    assert SECRET not in caplog.text and "t0ps3cret" not in caplog.text
    assert SECRET not in make_source(uri).uri


def test_video_file_plays_every_frame_then_ends(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", 12)
    for uri in (str(path), f"file:{path}"):
        src = open_source(uri)
        try:
            assert isinstance(src, VideoFileSource)
            assert not src.live and src.kind == "file"
            assert src.fps == pytest.approx(25.0)
            assert src.size == (160, 120)
            frames = []
            while (f := src.read()) is not None:
                frames.append(f)
            assert [f.index for f in frames] == list(range(12))
            assert frames[0].image.shape == (120, 160, 3)
        finally:
            src.close()


def test_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(SourceError, match="cannot decode .*notes.mp4 as video"):
        open_source(str(bad))


def test_image_folder_sorted_skipping_what_is_not_an_image(tmp_path: Path) -> None:
    for name, value in (("b.png", 20), ("a.jpg", 10), ("c.bmp", 30)):
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), value, np.uint8))
    (tmp_path / "readme.txt").write_text("ignored")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    src = open_source(str(tmp_path))
    try:
        assert isinstance(src, ImageFolderSource) and not src.live
        means = []
        while (f := src.read()) is not None:
            means.append(round(float(f.image.mean())))
        # a.jpg, b.png, c.bmp in name order; broken.png skipped (sorted before c.bmp).
        assert means[0] == pytest.approx(10, abs=2)
        assert means[1:] == [20, 30]
    finally:
        src.close()


def test_empty_image_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images in folder"):
        open_source(str(tmp_path))


def test_demo_uri_gives_the_demo_source() -> None:
    src = open_source("demo:?fps=60&size=320x240")
    try:
        assert src.kind == "demo" and src.live
        frame = src.read()
        assert frame is not None and frame.image.shape == (240, 320, 3)
    finally:
        src.close()


def test_mjpeg_stream_reads_frames_and_hides_credentials() -> None:
    with MjpegCamera() as cam:
        src = open_source(cam.url(f"viewer:{SECRET}"))
        try:
            assert src.live and src.kind == "http"
            assert src.uri == cam.url("***")
            first, second = src.read(), src.read()
            assert first.image.shape == (240, 320, 3)
            assert second.index == first.index + 1
            cam.mode = "down"  # the camera drops the connection
            with pytest.raises(SourceLost) as lost:
                for _ in range(100):
                    src.read()
            assert "ended" in str(lost.value) and SECRET not in str(lost.value)
        finally:
            src.close()
