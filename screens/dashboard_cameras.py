"""The dashboard's cameras (mixed into :class:`~screens.dashboard.DashboardScreen`): on a device with
several, the camera strip (screens/widgets/camerastrip.py) and the panels of the selected camera.

- ``watch_cameras`` (worker group "cameras") reads ``GET /v1/cameras`` every ``CAMERAS_EVERY_S`` while
  the link is up (cameras come and go, and the list says which is down and why); each read arrives as
  ``CamerasListed``. An agent without the route (404, an older one) is a one-camera device: the watch ends.
- the SSE ``camera`` events (one Sample per camera and tick) are kept per camera
  (``record_camera_sample``), so switching shows the chosen camera's history at once.
- ``[`` / ``]`` select the previous / next camera; ``g`` opens the grid of every camera's snapshot
  (screens/camera_grid.py), where enter selects the camera under the cursor.

The handler goes by Textual's naming convention (``on_camera_switch_cameras_listed``): ``@on`` only
registers in classes built by Textual's metaclass, and this mixin is not one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual import work
from textual.app import SystemCommand
from textual.message import Message

from fieldtui.errors import AgentClientError
from fieldtui.protocol import CameraList, CameraStatus, Sample, SourceStatus
from screens.telemetry import Telemetry
from screens.widgets.camera import CameraView
from screens.widgets.camerastrip import CameraStrip

CAMERA_ACTIONS = ("next_camera", "prev_camera", "camera_grid")


class CameraSwitch:
    """Needs the dashboard's ``api``, ``telemetry``, ``status``, ``link_up`` and ``_schedule_render()``."""

    CAMERAS_EVERY_S = 3.0
    camera_list: CameraList | None = None
    selected_camera: str | None = None

    class CamerasListed(Message):
        def __init__(self, listing: CameraList | None) -> None:
            super().__init__()
            self.listing = listing  # None: the agent has no /v1/cameras (one camera)

    @property
    def many_cameras(self) -> bool:
        return self.camera_list is not None and len(self.camera_list.cameras) > 1

    @property
    def camera_telemetry(self: Any) -> dict[str, Telemetry]:
        if "_camera_telemetry" not in self.__dict__:
            self._camera_telemetry = {}
        return self._camera_telemetry

    def record_camera_sample(self, sample: Sample) -> None:
        """An SSE ``camera`` event: kept in that camera's own telemetry (called by the link worker)."""
        if sample.camera_name:
            self.camera_telemetry.setdefault(sample.camera_name, Telemetry()).add(sample)

    def shown_telemetry(self: Any) -> Telemetry:
        """The selected camera's telemetry on a multi-camera device; else the device's one stream."""
        if self.many_cameras and self.selected_camera is not None:
            return self.camera_telemetry.setdefault(self.selected_camera, Telemetry())
        return self.telemetry

    def selected_status(self) -> CameraStatus | None:
        if not self.many_cameras:
            return None
        return next((c for c in self.camera_list.cameras if c.name == self.selected_camera), None)

    def selected_source(self: Any) -> tuple[str | None, SourceStatus | None]:
        """(camera name, its source) for the camera view: (None, the pipeline's) on a one-camera device."""
        camera = self.selected_status()
        if camera is None:
            return None, self.status.source if self.status is not None else None
        return camera.name, camera.source

    @work(exclusive=True, exit_on_error=False, group="cameras")
    async def watch_cameras(self: Any) -> None:
        lister = getattr(self.api, "cameras", None)
        if lister is None:
            return
        while self.link_up:
            if self.is_current:  # not under logs, models or the grid: nobody would see it
                try:
                    self.post_message(self.CamerasListed(await lister()))
                except AgentClientError as err:
                    if err.status == 404:
                        self.post_message(self.CamerasListed(None))
                        return
            await asyncio.sleep(self.CAMERAS_EVERY_S)

    def on_camera_switch_cameras_listed(self: Any, message: CamerasListed) -> None:
        self.camera_list = message.listing
        names = [c.name for c in message.listing.cameras] if message.listing is not None else []
        if self.selected_camera not in names:
            self.select_camera(names[0] if names else None)
        else:
            self.render_strip()

    def render_strip(self: Any) -> None:
        cameras = self.camera_list.cameras if self.camera_list is not None else []
        latest = {name: t.latest for name, t in self.camera_telemetry.items() if t.latest is not None}
        self.query_one(CameraStrip).show(cameras, latest, self.selected_camera)

    def select_camera(self: Any, name: str | None) -> None:
        """Show ``name``'s panels: charts, camera view, health and classes; the strip marks it."""
        self.selected_camera = name
        many = self.many_cameras
        self.query_one("#charts").border_title = f"telemetry · {name}" if many else "telemetry"
        self.query_one("#camera").border_title = f"camera · {name}" if many else "camera"
        view = self.query_one(CameraView)
        if view.camera != (name if many else None):
            view.show_message(f"waiting for {name}'s frame…" if many else "waiting for the first frame…")
        self._tell_camera()
        self.render_strip()
        self.refresh_bindings()
        self._schedule_render()

    def _step_camera(self: Any, step: int) -> None:
        if not self.many_cameras:
            return
        names = [c.name for c in self.camera_list.cameras]
        at = names.index(self.selected_camera) if self.selected_camera in names else 0
        self.select_camera(names[(at + step) % len(names)])

    def action_next_camera(self) -> None:
        self._step_camera(1)

    def action_prev_camera(self) -> None:
        self._step_camera(-1)

    def action_camera_grid(self: Any) -> None:
        if not self.many_cameras:
            return
        from screens.camera_grid import CameraGridScreen

        def chosen(name: str | None) -> None:
            if name is not None:
                self.select_camera(name)

        self.app.push_screen(
            CameraGridScreen(self.api, self.record, self.camera_list, self.selected_camera), chosen
        )

    def camera_commands(self: Any) -> list[SystemCommand]:
        """The palette's camera entries, on a device with several cameras."""
        if not self.many_cameras:
            return []
        return [
            SystemCommand("Next camera", "show the next camera's panels (])", self.action_next_camera),
            SystemCommand(
                "Previous camera", "show the previous camera's panels ([)", self.action_prev_camera
            ),
            SystemCommand("All cameras", "every camera's snapshot at once (g)", self.action_camera_grid),
        ]
