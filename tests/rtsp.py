"""Real camera counterparts for tests: GStreamer's RTSP server and ffmpeg's MJPEG-over-HTTP server.

- :func:`h264_clip` makes a small H.264 MP4 with ``ffmpeg`` (libx264, else openh264).
- :class:`RtspServer` runs tests/rtsp_server.py (gst-rtsp-server) under the system Python that has
  ``gi``, as a process a test can kill, restart on the same port, or freeze with SIGSTOP.
- :class:`FfmpegMjpeg` runs ``ffmpeg -re ... -f mpjpeg -listen 1 http://127.0.0.1:PORT/``: one client.

Each ``*_missing()`` returns why the counterpart cannot run here (tests skip with that reason), or None.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = os.environ.get("FIELDTUI_GI_PYTHON", "/usr/bin/python3")


def _encoder() -> str | None:
    if shutil.which("ffmpeg") is None:
        return None
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    for name in ("libx264", "libopenh264"):
        if f" {name} " in out:
            return name
    return None


def ffmpeg_missing() -> str | None:
    if shutil.which("ffmpeg") is None:
        return "ffmpeg is not installed (Debian: apt install ffmpeg)"
    return None


def rtsp_missing() -> str | None:
    if reason := ffmpeg_missing():
        return reason
    if _encoder() is None:
        return "this ffmpeg has no H.264 encoder (libx264 or libopenh264)"
    if not Path(SYSTEM_PYTHON).is_file():
        return f"no system Python at {SYSTEM_PYTHON} for gst-rtsp-server (set FIELDTUI_GI_PYTHON)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer; gi.require_version('Gst', '1.0'); from gi.repository import Gst; "
         "Gst.init(None); assert Gst.ElementFactory.find('qtdemux') and Gst.ElementFactory.find('rtph264pay')"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        return (
            f"gst-rtsp-server through PyGObject is not usable ({last}): install python3-gi, "
            "gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-{base,good}"
        )
    return None


def h264_clip(path: Path, seconds: int = 60, size: str = "320x240", fps: int = 15) -> Path:
    """A moving test pattern, H.264 baseline, a key frame every second, in an MP4."""
    encoder = _encoder()
    assert encoder is not None, rtsp_missing()
    codec = ["-c:v", encoder] + (
        ["-preset", "ultrafast", "-profile:v", "baseline"] if encoder == "libx264" else []
    )
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}", *codec,
         "-g", str(fps), "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """gst-rtsp-server on 127.0.0.1 serving ``clip`` at ``path``; ``start()`` again reuses the port."""

    def __init__(
        self, clip: Path, *, path: str = "/live", user: str | None = None, password: str | None = None,
        digest: bool = False,
    ) -> None:  # fmt: skip
        self.clip, self.path, self.user, self.password, self.digest = clip, path, user, password, digest
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> RtspServer:
        cmd = [
            SYSTEM_PYTHON,
            str(SERVER_SCRIPT),
            str(self.clip),
            "--port",
            str(self.port),
            "--path",
            self.path,
        ]
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password or ""] + (
                ["--digest"] if self.digest else []
            )
        deadline = time.monotonic() + timeout
        while True:  # a just-freed port can still be in TIME_WAIT for a moment
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.startswith("PORT "):
                self.port = int(line.split()[1])
                return self
            err = self.proc.communicate(timeout=10)[1]
            if "cannot listen" not in err or time.monotonic() > deadline:
                raise RuntimeError(f"rtsp server did not start: {err.strip()}")
            time.sleep(0.2)

    def url(self, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"rtsp://{at}127.0.0.1:{self.port}{self.path}"

    def kill(self) -> None:
        """Gone at once, as a camera losing power: SIGKILL, no RTSP TEARDOWN."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.communicate(timeout=10)
        self.proc = None

    def freeze(self) -> None:
        """The server hangs (SIGSTOP): connections stay open, nothing more is sent."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class FfmpegMjpeg:
    """``ffmpeg -f mpjpeg -listen 1``: a real MJPEG-over-HTTP server for one client, paced (``-re``)."""

    def __init__(self, clip: Path | None = None) -> None:
        self.clip = clip  # None: ffmpeg's own moving test pattern, 320x240 at 15 fps
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FfmpegMjpeg:
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", *self._input(), "-an",
             "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{self.port}/cam.mjpg"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # listening once a connect succeeds... which it then serves
            if self.proc.poll() is not None:
                raise RuntimeError(f"ffmpeg exited: {self.proc.stderr.read().decode(errors='replace')}")  # type: ignore[union-attr]
            if _listening(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError("ffmpeg did not listen")

    def _input(self) -> list[str]:
        if self.clip is not None:
            return ["-i", str(self.clip)]
        return ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15"]

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.communicate(timeout=10)
        self.proc = None

    def __enter__(self) -> FfmpegMjpeg:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, without connecting (ffmpeg -listen 1 serves the
    first connection and exits): read /proc/net/tcp on Linux."""
    needle = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True
    return any(line.split()[1] == needle and line.split()[3] == "0A" for line in lines)


if __name__ == "__main__":  # a manual check: python -m tests.rtsp
    print(rtsp_missing() or "gst-rtsp-server usable", file=sys.stderr)
