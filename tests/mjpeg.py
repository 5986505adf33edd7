"""A real MJPEG-over-HTTP camera on 127.0.0.1 for tests: ``multipart/x-mixed-replace`` JPEG frames.

``mode`` switches what it does, as a misbehaving camera would: ``"up"`` streams frames, ``"stall"`` keeps
the connection open and sends nothing, ``"down"`` answers 503 and closes every stream in progress.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


class MjpegCamera:
    def __init__(self, fps: float = 30.0, size: tuple[int, int] = (320, 240)) -> None:
        self.fps = fps
        self.mode = "up"
        self.requests = 0
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        self._base = ((xx * 255 // w)[..., None] + np.zeros(3, np.int64)).astype(np.uint8)
        self._yy = yy
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                camera.requests += 1
                if camera.mode == "down":
                    self.send_error(503, "camera offline")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while not camera.closed:
                    if camera.mode == "down":
                        return
                    if camera.mode == "stall":
                        time.sleep(0.02)
                        continue
                    jpeg = camera.jpeg(i)
                    try:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                            + jpeg
                            + b"\r\n"
                        )
                    except OSError:
                        return
                    i += 1
                    time.sleep(1.0 / camera.fps)

            def log_message(self, *args: object) -> None:
                pass

        self.closed = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-camera", daemon=True)
        self._thread.start()

    def url(self, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/video.mjpg"

    def jpeg(self, i: int) -> bytes:
        frame = self._base.copy()
        band = (self._yy // 8 + i) % 2 == 0  # a moving pattern so frames differ
        frame[band] = 255 - frame[band]
        ok, buf = cv2.imencode(".jpg", frame)
        assert ok
        return buf.tobytes()

    def close(self) -> None:
        self.closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> MjpegCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
