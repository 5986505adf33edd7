"""Every camera of a multi-camera device at once: one tile per camera, its annotated snapshot
(``GET /v1/cameras/NAME/snapshot.jpg``, drawn in half blocks like the dashboard's camera view), its name
and health badge on the border. ``enter`` on a tile goes back to the dashboard showing that camera.

Each tile is a :class:`~screens.widgets.camera.CameraView` for one camera name, so it runs its own
snapshot loop sized for itself; ``watch_badges`` (group "badges") re-reads the camera list every
``BADGES_EVERY_S`` so a camera that goes down says so on its tile.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header

from fieldtui.errors import AgentClientError
from fieldtui.protocol import CameraList, DeviceRecord
from fieldtui.protocol.cameras import camera_verdict
from screens.widgets.camera import CameraView
from screens.widgets.camerastrip import BADGES
from screens.widgets.footer import Footer


class CameraGridScreen(Screen[str | None]):
    CSS_PATH = "camera_grid.tcss"
    BINDINGS = [
        Binding("escape", "dismiss_grid", "Back"),
        Binding("enter", "pick", "Show this camera"),
        Binding("right,down", "app.focus_next", "Next", show=False),
        Binding("left,up", "app.focus_previous", "Previous", show=False),
    ]
    BADGES_EVERY_S = 3.0

    class Listed(Message):
        def __init__(self, listing: CameraList) -> None:
            super().__init__()
            self.listing = listing

    def __init__(self, api: Any, record: DeviceRecord, listing: CameraList, selected: str | None) -> None:
        super().__init__()
        self.api = api
        self.record = record
        self.listing = listing
        self.selected = selected

    def compose(self) -> ComposeResult:
        yield Header()
        with Grid(id="tiles"):
            for camera in self.listing.cameras:
                tile = CameraView(self.api, camera=camera.name, id=f"tile-{camera.name}")
                tile.can_focus = True
                yield tile
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.record.name}: {len(self.listing.cameras)} cameras"
        self.query_one("#tiles").styles.grid_size_columns = math.ceil(math.sqrt(len(self.listing.cameras)))
        self._badges(self.listing)
        for tile in self.query(CameraView):
            tile.link_up = True
            tile.show_message("waiting for a frame…")
        chosen = self.query(f"#tile-{self.selected}") if self.selected else None
        (chosen.first() if chosen else self.query(CameraView).first()).focus()
        self.watch_badges()

    def on_screen_suspend(self) -> None:
        for tile in self.query(CameraView):
            tile.stop()  # no snapshots while nobody looks (help, the palette)

    def on_screen_resume(self) -> None:
        for tile in self.query(CameraView):
            tile.start()

    def _badges(self, listing: CameraList) -> None:
        for camera in listing.cameras:
            for tile in self.query(f"#tile-{camera.name}").results(CameraView):
                word, _ = BADGES[camera_verdict(camera)]
                tile.border_title = camera.name
                tile.border_subtitle = word
                tile.source = camera.source
                tile.set_class(word.endswith(("down", "check")), "-unwell")

    @work(exclusive=True, exit_on_error=False, group="badges")
    async def watch_badges(self) -> None:
        while True:
            await asyncio.sleep(self.BADGES_EVERY_S)
            try:
                self.post_message(self.Listed(await self.api.cameras()))
            except AgentClientError:
                continue  # the tiles say what is wrong with their own snapshots

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        self._badges(message.listing)

    def action_pick(self) -> None:
        focused = self.focused
        self.dismiss(focused.camera if isinstance(focused, CameraView) else None)

    def action_dismiss_grid(self) -> None:
        self.dismiss(None)
