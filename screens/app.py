"""The console app: the device list first, a device's dashboard on enter, help on ``?``.

:class:`FieldtuiApp` takes its services by injection: a :class:`~fieldtui.fleet.Fleet` (or a fake with
the same methods, in tests) and a clock. :func:`run` is ``fieldtui`` alone; :func:`run_demo` is
``fieldtui demo``: it starts the local demo agent (fieldtui.demo), opens straight onto its dashboard,
and stops the agent when the app quits, whichever way it quits.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from textual import events, work
from textual.actions import SkipAction
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, ListView, Log, OptionList, RichLog, TextArea, Tree

from fieldtui.errors import ConsoleError
from fieldtui.protocol import DeviceRecord
from fieldtui.redact import redact
from screens.commands import DeviceCommands
from screens.devices import DevicesScreen
from screens.widgets.footer import NARROW

# The dashboard, logs, help and dialogs are imported when first opened: start-up pays for the list only.

SHORT = 32  # rows: below them (and below NARROW columns) the screens fold panels away
LISTS = (DataTable, ListView, OptionList, Tree)  # j/k move their cursor (OptionList: SelectionList too)
SCROLLS = (RichLog, Log, ScrollableContainer)  # j/k scroll them


class FieldtuiApp(App[None]):
    TITLE = "fieldtui"
    COMMANDS = App.COMMANDS | {DeviceCommands}
    BINDINGS = [
        # Priority, so they work in dialogs too (a modal screen hides the app's other bindings); in a
        # text field they step aside (SkipAction) and the key is typed.
        Binding("question_mark", "help", "Help", key_display="?", priority=True),
        # Our own palette bindings replace Textual's default one, so ctrl+p is listed here too.
        Binding("ctrl+p", "command_palette", "Command palette", show=False, priority=True),
        Binding(
            "colon",
            "command_palette",
            "The palette, k9s style: every action, every device",
            key_display=":",
            show=False,
        ),
        Binding("ctrl+q", "quit", "Quit (stops the demo agent too)", show=False, priority=True),
        # k9s, lazydocker and less keys in every list, table, tree and log
        Binding("j", "cursor('down')", "Down in a list, table, tree or log", show=False, priority=True),
        Binding("k", "cursor('up')", "Up in a list, table, tree or log", show=False, priority=True),
    ]

    def __init__(
        self,
        fleet: Any,
        *,
        open_device: DeviceRecord | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.fleet = fleet
        self.clock = clock
        self._open_first = open_device

    def on_resize(self, event: events.Resize) -> None:
        # Textual has no media queries: screens' CSS reads these classes (an 80x24 terminal is -narrow -short)
        self.set_class(event.size.width < NARROW, "-narrow")
        self.set_class(event.size.height < SHORT, "-short")

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast of every screen passes here: credentials in it are hidden (fieldtui/redact.py)."""
        super().notify(
            redact(message), title=redact(title), severity=severity, timeout=timeout, markup=markup
        )

    async def on_mount(self) -> None:
        # Pushed, not returned from get_default_screen(): Textual loads a screen's CSS_PATH on push only.
        await self.push_screen(DevicesScreen(self.fleet))
        if self._open_first is not None:
            self.open_device(self._open_first)
        self.call_after_refresh(self.start_fleet)  # saved devices first, mDNS once they are on screen

    @work(exclusive=True, exit_on_error=False, group="fleet")
    async def start_fleet(self) -> None:
        try:
            await self.fleet.start(on_change=self._fleet_changed)
        except ConsoleError as err:  # a damaged config file: say so, keep the app up
            self.notify(str(err), title="Devices", severity="error", timeout=30)
        self._fleet_changed()

    async def on_unmount(self) -> None:
        await self.fleet.close()

    def _fleet_changed(self) -> None:
        # Called by the mDNS browser on the event loop; the list re-reads the fleet on its own message.
        for screen in self.screen_stack:
            if isinstance(screen, DevicesScreen):
                screen.post_message(DevicesScreen.FleetChanged())

    def open_device(self, record: DeviceRecord) -> None:
        """The dashboard of ``record``, on top of the device list (from anywhere: the palette)."""
        from screens.dashboard import DashboardScreen

        self._to_devices()
        self.push_screen(DashboardScreen(self.fleet.client(record), record))

    def action_cursor(self, direction: str) -> None:
        """``j``/``k``: what ↓/↑ do in the focused list, table or tree, or scroll a log or help page;
        anywhere else the key goes on as typed."""
        widget = self.focused
        if isinstance(widget, LISTS):
            getattr(widget, f"action_cursor_{direction}")()
        elif isinstance(widget, SCROLLS):
            getattr(widget, f"action_scroll_{direction}")()
        else:
            raise SkipAction()

    def action_help(self) -> None:
        from screens.add_device import AddDeviceScreen
        from screens.benchmark import BenchmarkScreen
        from screens.dashboard import DashboardScreen
        from screens.dialogs import ConfirmDialog, PromptDialog
        from screens.engines import EnginesScreen
        from screens.help import HelpScreen
        from screens.logs import LogsScreen
        from screens.models import ModelsScreen
        from screens.pair_dialog import PairDialog
        from screens.push_dialog import PushDialog
        from screens.rebuild_dialog import RebuildDialog
        from screens.rollout import RolloutScreen
        from screens.rollout_dialog import RolloutDialog
        from screens.trio import TrioScreen
        from screens.trio_rules import RulesDialog

        if isinstance(self.screen, HelpScreen) or isinstance(self.focused, (Input, TextArea)):
            raise SkipAction()  # help closes on its own ?; a text field takes ? as typed
        everywhere = [
            ("tab, shift+tab", "move between fields and buttons"),
        ]
        # the screens each section is about: the current screen's section comes first
        owners: dict[str, tuple[type, ...]] = {
            "Devices": (DevicesScreen,),
            "Dashboard": (DashboardScreen,),
            "Models": (ModelsScreen,),
            "Push a model file": (PushDialog,),
            "Roll out a model": (RolloutDialog,),
            "Rollout": (RolloutScreen,),
            "Benchmark": (BenchmarkScreen,),
            "Engines": (EnginesScreen,),
            "Rebuild an engine": (RebuildDialog,),
            "Trio forwarding": (TrioScreen,),
            "Trio rules": (RulesDialog,),
            "Logs": (LogsScreen,),
            "Dialogs and forms": (ConfirmDialog, PromptDialog, AddDeviceScreen, PairDialog),
        }
        sections = [
            ("Everywhere", self.BINDINGS, everywhere),
            ("Devices", DevicesScreen.BINDINGS, [("↑ ↓", "choose a device")]),
            ("Dashboard", DashboardScreen.BINDINGS, []),
            ("Models", ModelsScreen.BINDINGS, [("↑ ↓", "choose a version")]),
            ("Push a model file", PushDialog.BINDINGS, [("enter", "open a folder, pick a file, or push")]),
            ("Roll out a model", RolloutDialog.BINDINGS, [("enter", "pick a file, or start the rollout")]),
            ("Rollout", RolloutScreen.BINDINGS, []),
            (
                "Benchmark",
                BenchmarkScreen.BINDINGS,
                [
                    ("space", "toggle a backend or precision"),
                    ("enter", "run (in a field), or show a past run"),
                ],
            ),
            ("Engines", EnginesScreen.BINDINGS, [("↑ ↓", "choose an engine (its stale reason shows below)")]),
            ("Rebuild an engine", RebuildDialog.BINDINGS, [("↑ ↓ enter", "choose a runtime and precision")]),
            ("Trio forwarding", TrioScreen.BINDINGS, []),
            ("Trio rules", RulesDialog.BINDINGS, [("enter", "save the rules")]),
            ("Logs", LogsScreen.BINDINGS, [("↑ ↓ pgup pgdn", "scroll back (stops following the tail)")]),
            (
                "Dialogs and forms",
                [
                    *ConfirmDialog.BINDINGS,
                    *PromptDialog.BINDINGS,
                    *AddDeviceScreen.BINDINGS,
                    *PairDialog.BINDINGS,
                ],
                [("enter", "the focused button, or the next field of a form")],
            ),
        ]
        here = [i for i, (title, *_) in enumerate(sections) if isinstance(self.screen, owners.get(title, ()))]
        if here:
            title, bindings, extra = sections.pop(here[0])
            sections.insert(0, (f"{title}: this screen", bindings, extra))
        self.push_screen(HelpScreen(sections))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help: keys by screen", "every key of every screen", self.action_help)
        if not isinstance(screen, DevicesScreen):
            yield SystemCommand("Devices", "back to the device list", self._to_devices)
        commands = getattr(screen, "commands", None)
        if callable(commands):
            yield from commands()
        yield from self._dashboard_commands(screen)

    def _dashboard_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """On a device's models, logs, Trio... screens: the dashboard's commands too (every screen's)."""
        from screens.dashboard import DashboardScreen
        from screens.palette import from_dashboard

        if isinstance(screen, (DashboardScreen, ModalScreen)) or screen not in self.screen_stack:
            return
        dashboard = next((s for s in reversed(self.screen_stack) if isinstance(s, DashboardScreen)), None)
        if dashboard is not None:
            for command in dashboard.commands():
                yield from_dashboard(self, dashboard, command)

    def _to_devices(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, DevicesScreen):
            self.pop_screen()


def run(fleet: Any = None) -> int:
    """``fieldtui`` with no command: the device list."""
    from fieldtui.fleet import Fleet

    FieldtuiApp(fleet or Fleet()).run()
    return 0


def run_demo(faults: bool = False, *, err=sys.stderr, cameras: int = 1) -> int:
    """``fieldtui demo``: a local agent, paired, on its dashboard; quitting stops the agent."""
    from fieldtui.demo import demo_banner, start_demo_agent
    from fieldtui.fleet import Fleet

    async def main() -> None:
        err.write("starting the demo agent (model, camera, API)...\n")
        err.flush()
        async with start_demo_agent(faults, cameras=cameras) as demo:
            if demo.attached:
                err.write(demo_banner(demo) + "\n")
                err.flush()
            app = FieldtuiApp(Fleet(), open_device=demo.device)
            loop = asyncio.get_running_loop()
            for name in ("SIGTERM", "SIGHUP"):  # a closed terminal quits in order: the agent is stopped
                with suppress(AttributeError, NotImplementedError, RuntimeError):
                    loop.add_signal_handler(getattr(signal, name), app.exit)
            await app.run_async()
            attached = demo.attached
        err.write("left the demo agent running for the other demo\n" if attached else "demo agent stopped\n")

    asyncio.run(main())
    return 0
