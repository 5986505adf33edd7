"""Live cameras through OpenCV: ``rtsp://``, ``http(s)://`` (MJPEG and friends) and ``usb:N`` (V4L2).

FFmpeg's and OpenCV's own console logging is silenced: their lines can carry the stream URL, credentials
included, and our SourceError/SourceLost messages already say what went wrong in words a technician
can act on.
"""

from __future__ import annotations

import os
import re
import threading
import time

import numpy as np

from agent.core.errors import SourceError
from agent.frames.sources.base import STALL_S, Frame, Source, SourceLost

OPEN_TIMEOUT_S = 5.0
# A live stream that delivers nothing for this long is "stalled"; the pipeline then reconnects.
READ_TIMEOUT_S = STALL_S

_USB = re.compile(r"^usb:(?://)?(\d+)$", re.IGNORECASE)
_AVFORMAT = re.compile(r"avformat:\s*YES \((\d+)\.")
_options_lock = threading.Lock()
_options_set = False


def ffmpeg_capture_options(timeout_s: float, avformat_major: int | None) -> str:
    """FFmpeg options for every capture (OpenCV's ``OPENCV_FFMPEG_CAPTURE_OPTIONS``: ``key;value|...``).

    Socket timeouts in microseconds, so a camera that hangs is given up on after ``timeout_s`` by FFmpeg
    itself: ``timeout`` for rtsp (libavformat >= 59, FFmpeg 5; before that rtsp's ``timeout`` meant
    *listen*, and the socket timeout was ``stimeout``) and for http; ``rw_timeout`` for any protocol's
    reads. RTSP over TCP, which OpenCV only sets itself when this variable is unset: interleaved RTP
    gets through NAT and firewalls where UDP does not, and loses no packets.
    """
    us = int(timeout_s * 1_000_000)
    rtsp_timeout = "timeout" if avformat_major is None or avformat_major >= 59 else "stimeout"
    return f"rtsp_transport;tcp|{rtsp_timeout};{us}|rw_timeout;{us}"


def _set_capture_options(cv2) -> None:
    """Once, before the first capture (OpenCV reads the variable at every open). A value exported by
    the user is kept as it is."""
    global _options_set
    with _options_lock:
        if _options_set:
            return
        m = _AVFORMAT.search(cv2.getBuildInformation())
        options = ffmpeg_capture_options(STALL_S, int(m.group(1)) if m else None)
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", options)
        _options_set = True


def quiet_cv2():
    """cv2 with OpenCV's console logging off (FFmpeg's is off already: see agent/frames/sources/__init__.py)
    and FFmpeg's timeouts set."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    _set_capture_options(cv2)
    return cv2


class CaptureSource(Source):
    """What every source read through a ``cv2.VideoCapture`` shares: frames, size, release."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self._cap = None
        self._index = 0
        self._size: tuple[int, int] | None = None

    def _frame(self, image: np.ndarray) -> Frame:
        if image.ndim == 2:  # some USB cameras and MJPEG streams deliver grey frames
            image = np.dstack([image, image, image])
        self._size = (image.shape[1], image.shape[0])
        frame = Frame(image=image, ts=time.monotonic(), index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size


class OpenCVSource(CaptureSource):
    """A network stream read with ``cv2.VideoCapture`` (FFmpeg backend). Live: stale frames drop."""

    live = True

    def __init__(self, uri: str, *, open_timeout: float | None = None, read_timeout: float | None = None):
        from agent.frames.sources import redact

        super().__init__(redact(uri))
        self._target: str | int = uri  # the real URI: only ever handed to OpenCV
        self.kind = uri.split(":", 1)[0].lower()
        if self.kind == "rtsps":
            self.kind = "rtsp"
        self.open_timeout = open_timeout if open_timeout is not None else OPEN_TIMEOUT_S
        self.read_timeout = read_timeout if read_timeout is not None else READ_TIMEOUT_S

    def _capture(self, cv2):
        ms = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout * 1000),
        ]
        return cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, ms)

    def _open_failed(self) -> str:
        return f"could not open {self.uri}: check the address and that the camera is on the network"

    def open(self) -> None:
        cv2 = quiet_cv2()
        self.close()
        if isinstance(self._target, str) and self._target[:7].lower() == "rtsp://":
            from agent.frames.sources.rtsp_probe import probe

            probe(self._target, self.uri, self.open_timeout)  # a refused password is not a network problem
        cap = self._capture(cv2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(self._open_failed())
        # Small driver buffers keep latency down where the backend honours it (V4L2 does).
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._size = (w, h) if w > 0 and h > 0 else None
        self._cap = cap
        self._index = 0

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceLost(f"{self.uri} is not open")
        started = time.monotonic()
        ok, image = self._cap.read()
        waited = time.monotonic() - started
        # A read that took the whole timeout returned because FFmpeg or OpenCV gave up waiting, even
        # when it hands back a picture (the decoder's last, flushed): the camera has stopped sending.
        if waited >= self.read_timeout * 0.8:
            raise SourceLost(f"no frame for {waited:.0f} s from {self.uri}: stream stalled")
        if not ok or image is None:
            raise SourceLost(f"stream from {self.uri} ended: the camera closed the connection")
        return self._frame(image)


class USBSource(OpenCVSource):
    """A local V4L2 camera (``usb:0`` is /dev/video0)."""

    def __init__(self, uri: str, index: int, **kw) -> None:
        super().__init__(uri, **kw)
        self.kind = "usb"
        self._target = index

    def _capture(self, cv2):
        return cv2.VideoCapture(int(self._target), cv2.CAP_V4L2)

    def _open_failed(self) -> str:
        return (
            f"could not open {self.uri} (/dev/video{self._target}): check the camera is plugged in, "
            "that the index is right (v4l2-ctl --list-devices) and that this user is in the video group"
        )


def usb_source(uri: str) -> USBSource:
    m = _USB.match(uri.strip())
    if not m:
        raise SourceError(f"bad USB camera {uri!r}: use usb:N with N the V4L2 index, e.g. usb:0")
    return USBSource(uri.strip(), int(m.group(1)))
