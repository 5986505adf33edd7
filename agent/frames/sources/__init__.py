"""Frame sources: one URI in, an opened :class:`~agent.frames.sources.base.Source` out.

Accepted forms (the same list every error message repeats):

- ``demo:`` or ``demo:?faults=blur@20,dark@40&fps=30`` - the synthetic scene (agent/frames/sources/demo.py)
- ``file:PATH`` or a plain path - a video file, an image, or a folder of images (agent/frames/sources/files.py)
- ``rtsp://...``, ``http://...``, ``https://...`` - network cameras and MJPEG streams (OpenCV/FFmpeg)
- ``usb:N`` - a local V4L2 camera by index

Credentials never leave this module in clear: :func:`redact` is applied to every URI a source
reports, logs or puts in an error.
"""

from __future__ import annotations

import os
import re

from agent.core.errors import SourceError
from agent.frames.sources.base import Frame, Source, SourceLost

__all__ = ["ACCEPTED", "Frame", "Source", "SourceError", "SourceLost", "make_source", "open_source", "redact"]

# FFmpeg's own console lines can carry a stream URL with its password. OpenCV sets FFmpeg's log level
# once, when it first loads it, from this variable, so it is set on import, before any capture exists.
# (Export OPENCV_FFMPEG_LOGLEVEL yourself to debug a stream; nothing here overrides it.)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

ACCEPTED = (
    "demo:, file:PATH or a path (video file, image or image folder), rtsp://HOST/..., "
    "http(s)://HOST/... (MJPEG), usb:N"
)

# Query parameters that carry secrets in camera URLs (Hikvision, Axis, Reolink, signed URLs...).
_SECRET_PARAM = re.compile(
    r"([?&;][^=&;\s#]*?(?:pass|pwd|secret|token|key|auth|sig|credential|session)[^=&;\s#]*=)[^&;\s#]*",
    re.IGNORECASE,
)
# scheme://user:pass@host - the greedy authority match backtracks to the last "@", so a password that
# itself contains "@" is masked whole.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")


def redact(text: str) -> str:
    """``text`` with URI credentials replaced by ``***``: safe for logs, status and errors.

    ``rtsp://admin:hunter2@cam/live?token=abc`` -> ``rtsp://***@cam/live?token=***``. Works on a bare
    URI and on a message that contains one.
    """
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def make_source(uri: str) -> Source:
    """The source for ``uri``, not yet opened. Raises SourceError for a form we do not accept."""
    uri = uri.strip()
    if not uri:
        raise SourceError(f"empty source: give one of {ACCEPTED}")
    m = _SCHEME.match(uri)
    scheme = m.group(1).lower() if m else ""
    # One-letter "schemes" are Windows drive letters, i.e. plain paths.
    if len(scheme) == 1:
        scheme = ""
    if scheme == "demo":
        from agent.frames.sources.demo import open_demo

        return open_demo(uri)
    if scheme in _NETWORK_SCHEMES:
        from agent.frames.sources.opencv import OpenCVSource

        return OpenCVSource(uri)
    if scheme == "usb":
        from agent.frames.sources.opencv import usb_source

        return usb_source(uri)
    if scheme == "file":
        return _file_source(uri[len("file:") :].removeprefix("//"), uri)
    if scheme:
        raise SourceError(f"unknown source scheme {scheme!r} in {redact(uri)}: accepted forms are {ACCEPTED}")
    return _file_source(uri, uri)


def _file_source(path_text: str, uri: str) -> Source:
    from agent.core.home import user_path
    from agent.frames.sources.files import file_source

    if not path_text:
        raise SourceError(f"{uri!r} names no file: accepted forms are {ACCEPTED}")
    return file_source(user_path(path_text, SourceError))


def open_source(uri: str) -> Source:
    """Make and open the source for ``uri``; SourceError (redacted, with what to do) if it cannot."""
    source = make_source(uri)
    try:
        source.open()
    except SourceError:
        source.close()
        raise
    except Exception as err:  # a driver or decoder failing in a way we did not foresee
        source.close()
        raise SourceError(f"could not open {source.uri}: {type(err).__name__}: {redact(str(err))}") from None
    return source
