"""Finite sources: a video file, one image, or a folder of images (sorted by name).

They are not live: the pipeline applies back-pressure instead of dropping, so every frame is processed.
``fps`` is the rate the pipeline paces them at (the file's own rate) unless it runs ``fast``; image
folders have no rate of their own and go as fast as the pipeline does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from agent.core.errors import SourceError
from agent.frames.sources.base import Frame, Source
from agent.frames.sources.opencv import CaptureSource, quiet_cv2

log = logging.getLogger("fieldtui.agent.sources")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


class VideoFileSource(CaptureSource):
    kind = "file"
    live = False

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path
        self.fps: float | None = None
        self.frame_count: int | None = None

    def open(self) -> None:
        cv2 = quiet_cv2()
        self.close()
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot decode {self.path} as video: use a video file OpenCV/FFmpeg can read "
                "(.mp4, .avi, .mkv ...), an image, or a folder of images"
            )
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._size = (w, h) if w > 0 and h > 0 else None
        self._cap = cap
        self._index = 0

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        return self._frame(image)


class ImageFolderSource(Source):
    """Every image in a folder, in name order (or a single image). Unreadable files are skipped."""

    kind = "images"
    live = False
    fps: float | None = None

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path
        self.files: list[Path] = []
        self.frame_count: int | None = None
        self._next = 0
        self._index = 0
        self._size: tuple[int, int] | None = None

    def open(self) -> None:
        if self.path.is_dir():
            files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not files:
                accepted = " ".join(sorted(IMAGE_SUFFIXES))
                raise SourceError(f"no images in folder {self.path}: put images there ({accepted})")
        else:
            files = [self.path]
        self.files = files
        self.frame_count = len(files)
        self._next = 0
        self._index = 0

    def read(self) -> Frame | None:
        cv2 = quiet_cv2()
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping %s: not an image OpenCV can decode", path.name)
                continue
            self._size = (image.shape[1], image.shape[0])
            frame = Frame(image=image, ts=time.monotonic(), index=self._index)
            self._index += 1
            return frame
        return None

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size


def file_source(path: Path) -> Source:
    """A video file, an image or an image folder at ``path``; SourceError if there is nothing there."""
    from agent.frames.sources import ACCEPTED

    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as err:  # a name too long for the filesystem, a folder that may not be entered
        raise SourceError(
            f"cannot use {str(path)[:80]} as a source: {err.strerror}; accepted sources are {ACCEPTED}"
        ) from None
    if not exists:
        raise SourceError(f"no such file or folder: {path}; accepted sources are {ACCEPTED}")
    if is_dir or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(path)
    return VideoFileSource(path)
