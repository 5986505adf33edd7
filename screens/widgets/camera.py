"""The camera view: the agent's annotated frame (``GET /v1/snapshot.jpg``) about once a second.

The view sizes the request for itself (the agent scales the frame, so a terminal never downloads more
pixels than it can show), decodes it off the UI thread, and shows it in half blocks. Its loop is a worker
of the view, so it ends with it; the screen starts and stops it (``start``/``stop``) and tells it what
it needs to know: ``link_up``, the source's frame size and, on a multi-camera device, ``camera``: the
name whose ``/v1/cameras/NAME/snapshot.jpg`` it shows (attributes down).
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual import on, work
from textual.message import Message

from fieldtui.errors import AgentClientError
from fieldtui.protocol import SourceStatus
from screens.widgets.halfblock import HalfBlockImage, Picture, decode_picture, fit


class CameraView(HalfBlockImage):
    EVERY_S = 1.0

    class Fetched(Message, bubble=False):
        def __init__(self, picture: Picture | None, note: str = "") -> None:
            super().__init__()
            self.picture, self.note = picture, note

    def __init__(self, api: Any, *, camera: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.api = api
        self.camera = camera
        self.link_up = False
        self.source: SourceStatus | None = None
        self._cells = (0, 0)

    def on_resize(self) -> None:
        self._cells = (self.content_size.width, self.content_size.height)

    def start(self) -> None:
        self.call_after_refresh(self.on_resize)
        self.loop()

    def stop(self) -> None:
        self.workers.cancel_group(self, "camera")

    @work(exclusive=True, exit_on_error=False, group="camera")
    async def loop(self) -> None:
        """The annotated frame about once a second, sized for the view, decoded off the UI thread."""
        while True:
            cols, rows = self._cells
            source = self.source
            if cols and rows and self.link_up:
                want = cols
                if source is not None and source.width and source.height:
                    want = fit(source.width, source.height, cols, rows)[0]
                try:
                    width = max(16, want)
                    jpeg = await (
                        self.api.camera_snapshot_jpeg(self.camera, width=width)
                        if self.camera is not None
                        else self.api.snapshot_jpeg(width=width)
                    )
                    picture = await asyncio.to_thread(decode_picture, jpeg, cols, rows)
                    self.post_message(self.Fetched(picture))
                except AgentClientError as err:
                    self.post_message(self.Fetched(None, err.detail))
                except ValueError as err:
                    self.post_message(self.Fetched(None, str(err)))
            await asyncio.sleep(self.EVERY_S)

    @on(Fetched)
    def _fetched(self, message: Fetched) -> None:
        if message.picture is not None:
            self.show(message.picture)
        else:
            self.show_message(message.note)
