"""One device, live: identity, charts, camera view, camera health and what it all means.

Three workers feed it, each ending its work in a past-tense message:

- ``follow`` (group "link") reads the agent's identity and status, then its SSE stream. Every sample is
  recorded in :class:`~screens.telemetry.Telemetry` as it arrives; ``SampleArrived`` coalesces (a
  newer one replaces one still queued), and rendering happens at most ``RENDER_EVERY_S``, so a slow
  terminal shows the newest sample, never a backlog. When the link drops, a banner says since when
  and when the next try is; retries back off up to ``RETRY_MAX_S``, and the view recovers by itself.
- the camera view (screens/widgets/camera.py) runs its own loop for ``/v1/snapshot.jpg`` while the
  screen is visible and the link is up; the screen tells it the link state and the source's size.
- ``restart`` / ``change_source`` (group "control") run a pipeline job and wait for its end.
- ``watch_over_ssh`` (group "ssh"), for a device paired over SSH while HTTP is down: there is no event
  stream then, so the status is read with ``fieldtui-agent status --json`` over SSH every
  ``SSH_POLL_S`` (fieldtui.sshwatch); its sample feeds the charts, and the link badge says it is polled.
  It stops when HTTP is back. It lives in screens/dashboard_ssh.py (:class:`SSHWatch`).
- ``watch_cameras`` (group "cameras"), on a device with several cameras: the camera strip, ``[``/``]``
  to select one (the panels show it), ``g`` for the grid of all snapshots. It lives in
  screens/dashboard_cameras.py (:class:`CameraSwitch`).

Workers belong to the screen: Textual cancels them when it is popped, and nothing here touches a
widget from a worker; only message handlers do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from pydantic import BaseModel
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Static

from fieldtui.diagnosis import CONFIDENCE_ALERT, DROP_ALERT, diagnose
from fieldtui.errors import CONNECTION_CLOSED, AgentClientError, AgentUnreachable
from fieldtui.protocol import DeviceInfo, DeviceRecord, HealthReport, Job, ModelInfo, PipelineStatus, Sample
from fieldtui.protocol.backoff import backoff_delay
from screens.dashboard_cameras import CAMERA_ACTIONS, CameraSwitch  # [ ] g: several cameras
from screens.dashboard_ssh import SSHWatch  # o, and the SSH watch while HTTP is down
from screens.dialogs import ConfirmDialog, PromptDialog
from screens.panels import camera_text, identity_text, link_badge, source_text, threads_text
from screens.telemetry import Telemetry
from screens.widgets.banner import LinkBanner
from screens.widgets.bars import CountBars
from screens.widgets.camera import CameraView
from screens.widgets.camerastrip import CameraStrip
from screens.widgets.chart import TimeChart
from screens.widgets.footer import Footer
from screens.widgets.stale import StaleMark

CHANGE_TITLES = {
    "activated": "Model activated",
    "rolled_back": "Rolled back",
    "auto_rolled_back": "Automatic rollback",
}


def retryable(err: AgentClientError) -> bool:
    """Down, restarting or overloaded: try again. A refused token or a changed pin needs a person."""
    return isinstance(err, AgentUnreachable) or (err.status is not None and err.status >= 500)


class DashboardScreen(CameraSwitch, SSHWatch, Screen[None]):
    CSS_PATH = "dashboard.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Devices"),
        # only on a device with several cameras (check_action)
        Binding("right_square_bracket", "next_camera", "Camera", key_display="[ ]"),
        Binding("left_square_bracket", "prev_camera", "Previous camera", show=False),
        Binding("g", "camera_grid", "All cameras"),
        Binding("l", "logs", "Logs"),
        Binding("r", "restart", "Restart"),
        Binding("s", "source", "Source"),
        Binding("c", "toggle_camera", "Camera view", show=False),
        Binding("z", "zoom_camera", "Camera view on the whole screen (and back)", show=False),
        Binding("m", "models", "Models"),
        Binding("f", "trio", "Trio"),
        Binding("b", "benchmark", "Benchmark"),
        Binding("e", "engines", "Engines"),
        Binding("o", "over_ssh", "Over SSH"),  # only for devices paired over SSH (check_action)
        Binding("o", "how_to_pair", "", show=False),  # the others: how to pair (help lists o once)
    ]
    RENDER_EVERY_S = 0.25
    RETRY_INITIAL_S = 1.0
    RETRY_MAX_S = 15.0

    # --- messages (posted by the workers, handled here) --------------------------------------------

    class Connected(Message):
        def __init__(self, device: DeviceInfo, status: PipelineStatus) -> None:
            super().__init__()
            self.device, self.status = device, status

    class SampleArrived(Message):
        def __init__(self, sample: Sample) -> None:
            super().__init__()
            self.sample = sample

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, DashboardScreen.SampleArrived)

    class EventArrived(Message):
        """A ``health`` or ``model`` event (jobs are followed by the control worker that started them)."""

        def __init__(self, event: str, model: BaseModel) -> None:
            super().__init__()
            self.event, self.model = event, model

    class LinkLost(Message):
        def __init__(self, reason: str, retry_in: float | None) -> None:
            super().__init__()
            self.reason, self.retry_in = reason, retry_in

    class LinkRefused(Message):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    class ControlFinished(Message):
        def __init__(
            self, what: str, job: Job | None, status: PipelineStatus | None, error: str | None
        ) -> None:
            super().__init__()
            self.what, self.job, self.status, self.error = what, job, status, error

    # --- set-up -------------------------------------------------------------------------------------

    def __init__(self, api: Any, record: DeviceRecord) -> None:
        super().__init__()
        self.api = api
        self.record = record
        self.telemetry = Telemetry()
        self.device: DeviceInfo | None = None
        self.status: PipelineStatus | None = None
        self.health: HealthReport | None = None
        self.link_up = False
        self.last_seen: float | None = None  # console clock of the newest sample (or status) received
        self.rendered_ts: float | None = None  # ts of the sample on screen (bench/tui.py reads it)
        self.last_event: str | None = None  # the latest model change and why, under the findings
        self.renders = 0
        self._last_render = 0.0
        self._render_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield Static(id="identity")
            yield Static(id="link")
        yield LinkBanner(id="banner")
        yield CameraStrip(id="camera-strip")
        with Horizontal(id="main"):
            with Vertical(id="charts"):
                yield StaleMark(id="stale")
                yield TimeChart("latency", unit=" ms", id="latency")
                yield TimeChart("throughput", unit=" fps", id="fps")
                yield TimeChart("confidence", top=1.0, alert=CONFIDENCE_ALERT, id="confidence")
                yield TimeChart("drops", unit="%", alert=DROP_ALERT * 100, alert_below=False, id="drops")
            with Vertical(id="side"):
                yield CameraView(self.api, id="camera")
                yield Static(id="camera-health")
                yield CountBars(id="classes")
        yield Static(id="findings")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.record.name
        if self.record.ssh is not None:
            self.query_one(LinkBanner).offer = "press o to look over SSH"
        self.query_one("#charts").border_title = "telemetry"
        self.query_one("#camera").border_title = "camera"
        self.query_one("#camera-health").border_title = "camera health"
        self.query_one("#classes").border_title = "detections per class"
        self.query_one("#findings").border_title = "health"
        self.query_one(CameraView).show_message("waiting for the first frame…")
        self._show_identity()
        self.query_one("#link", Static).update(link_badge(self.record))
        self.follow()

    def on_screen_resume(self) -> None:
        self._schedule_render()
        if self.query_one(CameraView).display:
            self.query_one(CameraView).start()

    def on_screen_suspend(self) -> None:
        self.query_one(CameraView).stop()  # no snapshots while nobody looks

    def clock(self) -> float:
        return getattr(self.app, "clock", time.time)()

    # --- the link -----------------------------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="link")
    async def follow(self) -> None:
        """Identity and status, then the event stream; on a drop, back off and start again."""
        attempt = 0  # retries since the last event
        last_event_id: str | None = None

        def on_state(state: str, reason: str | None) -> None:
            if state == "reconnecting":  # the stream's own quick retry: say so at once
                self.post_message(self.LinkLost(reason or "connection lost", None))

        while True:
            try:
                device = await self.api.device()
                self.post_message(self.Connected(device, await self.api.status()))
                # the agent's verdict now, not at its next change: the findings show nothing else
                self.post_message(self.EventArrived("health", await self.api.health()))
                stream = self.api.events(last_event_id=last_event_id, max_retries=0, on_state=on_state)
                async with stream:
                    async for event, model in stream:
                        attempt = 0
                        if event == "sample" and isinstance(model, Sample):
                            self.telemetry.add(model)
                            self.post_message(self.SampleArrived(model))
                        elif event == "camera" and isinstance(model, Sample):
                            self.record_camera_sample(model)
                            self.post_message(self.SampleArrived(model))
                        elif event in ("health", "model") and isinstance(model, BaseModel):
                            self.post_message(self.EventArrived(event, model))
                last_event_id = stream.last_event_id
                reason = CONNECTION_CLOSED
            except AgentClientError as err:
                if not retryable(err):
                    self.post_message(self.LinkRefused(str(err)))  # the whole line: what to fix
                    return
                reason = err.summary  # the banner already says where and when: what happened, in words
            # the exact wait (no jitter): the banner counts it down
            delay = backoff_delay(attempt, self.RETRY_INITIAL_S, self.RETRY_MAX_S, jitter=0)
            self.post_message(self.LinkLost(reason, delay))
            await asyncio.sleep(delay)
            attempt += 1

    @on(Connected)
    def _connected(self, message: Connected) -> None:
        self.device, self.status, self.link_up = message.device, message.status, True
        self.last_seen = self.clock()
        self.query_one(LinkBanner).clear()
        self.query_one(StaleMark).fresh()
        if self.record.ssh is not None:
            self._stop_ssh_watch()  # HTTP is back, and with it the event stream
            self.query_one(LinkBanner).offer = "press o to look over SSH"
        if message.status.sample is not None and self.telemetry.latest is None:
            self.telemetry.add(message.status.sample)
        self._show_identity()
        self._schedule_render()
        self._tell_camera()
        if self.is_current and self.query_one(CameraView).display:
            self.query_one(CameraView).start()
        self.watch_cameras()

    @on(SampleArrived)
    def _sample(self) -> None:
        self.last_seen = self.clock()
        if not self.link_up:  # the stream came back by its own quick reconnect: live again
            self.link_up = True
            self.query_one(LinkBanner).clear()
            self.query_one(StaleMark).fresh()
            self._show_identity()
            self._tell_camera()
        self._schedule_render()

    @on(EventArrived)
    def _event(self, message: EventArrived) -> None:
        if isinstance(message.model, HealthReport):
            self.health = message.model
            self._schedule_render()
        elif isinstance(message.model, ModelInfo) and self.status is not None:
            model = message.model
            self.status = self.status.model_copy(update={"model": model})
            self._show_identity()
            now = f"now running {model.version or model.path}"
            change = getattr(model, "change", None)
            why = getattr(model, "summary", None) or getattr(model, "reason", None)
            title = CHANGE_TITLES.get(change, "Model changed")
            # an automatic action is explained where the technician looks: the toast and the event line
            self.last_event = f"{dt.datetime.fromtimestamp(self.clock()):%H:%M:%S} {why or now}"
            self.notify(
                why or now,
                title=title,
                severity="warning" if change == "auto_rolled_back" else "information",
                timeout=20 if change == "auto_rolled_back" else 6,
            )
            self._schedule_render()

    @on(LinkLost)
    def _link_lost(self, message: LinkLost) -> None:
        self._went_stale()
        self.query_one(LinkBanner).lost(message.reason, message.retry_in)
        self._watch_ssh_while_down()

    @on(LinkRefused)
    def _link_refused(self, message: LinkRefused) -> None:
        self._went_stale()
        self.query_one(LinkBanner).refused(message.reason)
        self._watch_ssh_while_down()

    def _went_stale(self) -> None:
        """What is on screen is the past now: grey it, say since when, and stop claiming a state."""
        self.link_up = False
        self._tell_camera()
        if self.last_seen is not None and not self.ssh_polls:  # figures shown, and SSH is not feeding them
            self.query_one(StaleMark).stale(self.last_seen)
            self.query_one(CameraView).show_message("link lost: last frame")  # dimmed
            self._show_identity()

    # --- rendering ----------------------------------------------------------------------------------

    def _schedule_render(self) -> None:
        if self._render_timer is not None or not self.is_current:
            return  # one is coming already, or nobody sees this screen: render on resume
        wait = self._last_render + self.RENDER_EVERY_S - time.monotonic()
        if wait <= 0:
            self.render_telemetry()
        else:
            self._render_timer = self.set_timer(wait, self._timed_render)

    def _timed_render(self) -> None:
        self._render_timer = None
        self.render_telemetry()

    def render_telemetry(self) -> None:
        self._last_render = time.monotonic()
        self.render_strip()
        t = self.shown_telemetry()
        s = t.latest
        findings = self.query_one("#findings", Static)
        if s is None:
            findings.update(Text("waiting for the first sample…", style="dim"))
            return
        width = max(1, self.query_one("#latency", TimeChart).content_size.width)
        self.query_one("#latency", TimeChart).plot(
            t.tail(t.p50, width),
            t.tail(t.p95, width),
            caption=f"p50 {s.latency_p50_ms:.1f} ms · p95 {s.latency_p95_ms:.1f} ms",
        )
        threads = threads_text(self.status.threads if self.status is not None else None)
        self.query_one("#fps", TimeChart).plot(
            t.tail(t.fps, width), caption=f"{s.fps:.1f} fps" + (f" · {threads}" if threads else "")
        )
        conf = "-" if s.confidence_avg is None else f"{s.confidence_avg:.2f}"
        self.query_one("#confidence", TimeChart).plot(
            t.tail(t.confidence, width), caption=f"avg {conf} · alert under {CONFIDENCE_ALERT:.2f}"
        )
        drops = [d * 100 for d in t.tail(t.drop_rate, width)]
        self.query_one("#drops", TimeChart).plot(drops, caption=f"{s.drop_rate * 100:.1f}% of frames")
        self.query_one("#camera-health", Static).update(camera_text(s.camera))
        names = self.status.model.names if self.status is not None and self.status.model else None
        self.query_one("#classes", CountBars).counts(s.detections, names)
        problems = diagnose(s, self.health)
        level = self.health.status if self.health is not None else ("degraded" if problems else "ok")
        findings.set_classes(f"-{level}")
        if problems:
            text = Text("\n".join(f"• {p}" for p in problems))
        else:
            text = Text("✓ all well: confidence, camera and frame rate look normal", style="green")
        for note in self.health.notes if self.health is not None else []:
            text.append(f"\n· {note}", style="yellow")
        if self.last_event is not None:
            text.append(f"\n↺ {self.last_event}", style="dim")
        findings.update(text)
        self.rendered_ts = s.ts
        self.renders += 1

    def _show_identity(self) -> None:
        self.query_one("#identity", Static).update(
            identity_text(self.record, self.device, self.status, link_up=self.link_up or self.ssh_polls > 0)
        )

    # --- camera -------------------------------------------------------------------------------------

    def _tell_camera(self) -> None:
        view = self.query_one(CameraView)
        view.link_up = self.link_up
        view.camera, view.source = self.selected_source()

    def action_toggle_camera(self) -> None:
        view = self.query_one(CameraView)
        view.display = not view.display
        if view.display:
            view.start()
        else:
            view.stop()

    def action_zoom_camera(self) -> None:
        """The camera view alone on the screen (dashboard.tcss hides the rest under ``-zoom``), or back."""
        self.toggle_class("-zoom")
        view = self.query_one(CameraView)
        if self.has_class("-zoom") and not view.display:
            self.action_toggle_camera()

    # --- pipeline controls --------------------------------------------------------------------------

    def action_restart(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.notify("Restarting the pipeline…", timeout=3)
                self.control("restart", None)

        question = f"Restart the pipeline on {self.record.name}?"
        detail = "Frames stop for a few seconds while the camera and the model are reopened."
        self.app.push_screen(ConfirmDialog(question, "Restart", detail), answered)

    def action_source(self) -> None:
        current = self.status.source.uri if self.status is not None and self.status.source else ""

        def answered(uri: str | None) -> None:
            if uri and uri != current:
                self.notify(f"Switching the camera to {uri}…", timeout=3)
                self.control("source", uri)

        hint = "demo:, rtsp://host/stream, http(s)://host/mjpeg, usb:0, a video file or an image folder"
        self.app.push_screen(PromptDialog("Camera source", current, hint=hint), answered)

    @work(exclusive=True, exit_on_error=False, group="control")
    async def control(self, what: str, uri: str | None) -> None:
        """Run a pipeline job (restart or source change) to its end, then read the status again."""
        try:
            job = await (self.api.pipeline_restart() if what == "restart" else self.api.set_source(uri))
            job = await self.api.wait_job(job.id, timeout=60.0)
            status = await self.api.status()
        except AgentClientError as err:
            self.post_message(self.ControlFinished(what, None, None, str(err)))
            return
        self.post_message(self.ControlFinished(what, job, status, job.error))

    @on(ControlFinished)
    def _control_finished(self, message: ControlFinished) -> None:
        if message.status is not None:
            self.status = message.status
            self._show_identity()
            self._tell_camera()
        title = "Pipeline restart" if message.what == "restart" else "Source change"
        if message.job is not None and message.job.state == "succeeded":
            text = source_text(self.status) if message.what == "source" else "the pipeline is running again"
            self.notify(text, title=f"{title} done")
        else:
            self.notify(
                message.error or "it did not finish", title=f"{title} failed", severity="error", timeout=10
            )

    def action_logs(self) -> None:
        from screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(self.api, self.record))

    def action_models(self) -> None:
        from screens.models import ModelsScreen

        self.app.push_screen(ModelsScreen(self.api, self.record))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "over_ssh":
            return self.record.ssh is not None  # hidden for devices SSH was never set up for
        if action in CAMERA_ACTIONS:
            return self.many_cameras
        if action == "how_to_pair":
            return self.record.ssh is None
        return True

    def action_benchmark(self) -> None:
        from screens.benchmark import BenchmarkScreen

        self.app.push_screen(BenchmarkScreen(self.api, self.record))

    def action_engines(self) -> None:
        from screens.engines import EnginesScreen

        self.app.push_screen(EnginesScreen(self.api, self.record))

    def action_trio(self) -> None:
        from screens.trio import TrioScreen

        self.app.push_screen(TrioScreen(self.api, self.record))

    def commands(self) -> list[SystemCommand]:
        name = self.record.name
        found = [
            ("Trio forwarding", f"{name}'s rules, key and a test forward", self.action_trio),
            ("Benchmark", f"measure backends and precisions on {name}", self.action_benchmark),
            ("Engines", f"{name}'s engines, stale ones, and a rebuild", self.action_engines),
            ("Models", f"{name}'s model store: push, activate, roll back", self.action_models),
            ("Restart pipeline", f"restart {name}'s pipeline (asks first)", self.action_restart),
            ("Change camera source", "switch the pipeline to another source URI", self.action_source),
            ("Show logs", f"live log of {name}", self.action_logs),
            ("Toggle camera view", "show or hide the annotated frame", self.action_toggle_camera),
            (
                "Zoom camera view",
                "the annotated frame on the whole screen, and back",
                self.action_zoom_camera,
            ),
            ("Back to devices", "leave this dashboard", self.app.pop_screen),
        ]
        from screens.palette import reach_commands

        commands = [SystemCommand(*command) for command in found] + self.ssh_commands()
        return commands + self.camera_commands() + reach_commands(self)
