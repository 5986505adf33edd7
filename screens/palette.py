"""The palette's reach beyond the current screen: on a device's dashboard, ``ctrl+p`` also finds every
action of the device's other screens ("roll" finds "Models: Roll back the model"), and on those screens
it finds the dashboard's (and through it every other screen's).

Each of those commands opens its screen and runs the action there once the screen has read what it
shows (its first load: a rollback needs the store's listing to say what it rolls back to), so the action
behaves exactly as its key does, confirmation included. An action on "the selected" row only opens the
screen and says which key to press once a row is chosen: the palette must not pick a row for anyone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from textual.app import SystemCommand
from textual.screen import Screen

LOADS = ("list", "read", "device", "history")  # the worker groups of the screens' first reads
READY_TIMEOUT_S = 15.0


def _screens() -> list[tuple[str, type[Screen]]]:
    from screens.benchmark import BenchmarkScreen
    from screens.engines import EnginesScreen
    from screens.logs import LogsScreen
    from screens.models import ModelsScreen
    from screens.trio import TrioScreen

    return [
        ("Models", ModelsScreen),
        ("Benchmark", BenchmarkScreen),
        ("Engines", EnginesScreen),
        ("Trio", TrioScreen),
        ("Logs", LogsScreen),
    ]


def action_name(callback: Callable[..., Any]) -> str | None:
    """``rollback`` for a bound ``action_rollback`` (through the wrappers below too), else None."""
    while hasattr(callback, "palette_action"):
        callback = callback.palette_action
    name = getattr(callback, "__name__", "")
    return name.removeprefix("action_") if name.startswith("action_") else None


def _key_of(screen: type[Screen], action: str) -> str:
    for binding in screen.BINDINGS:
        if getattr(binding, "action", None) == action:
            return binding.key_display or binding.key.split(",")[0]
    return "its key"


def reach_commands(dashboard: Any) -> list[SystemCommand]:
    """Every action of every screen the dashboard opens, as "Screen: title" commands."""
    out = []
    for label, cls in _screens():
        screen = cls(dashboard.api, dashboard.record)  # not mounted: its commands are bound to it
        for command in screen.commands():
            action = action_name(command.callback)
            if action is not None and "selected" in command.title.lower():
                hint = f"choose one, then press {_key_of(cls, action)}"
                run = _opener(dashboard.app, screen, lambda s=screen, h=hint: s.notify(h, timeout=6))
            else:
                run = _opener(dashboard.app, screen, command.callback)
            run.palette_action = command.callback  # type: ignore[attr-defined]
            out.append(SystemCommand(f"{label}: {command.title}", command.help, run))
    return out


def from_dashboard(app: Any, dashboard: Any, command: SystemCommand) -> SystemCommand:
    """A dashboard command offered on one of its screens: back to the dashboard first, then run it."""

    def run() -> None:
        while app.screen is not dashboard and len(app.screen_stack) > 1:
            app.pop_screen()
        command.callback()

    run.palette_action = command.callback  # type: ignore[attr-defined]
    return SystemCommand(command.title, command.help, run)


def _opener(app: Any, screen: Screen, callback: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        app.run_worker(
            _open_then(app, screen, callback), group="palette", exclusive=True, exit_on_error=False
        )

    return run


async def _open_then(app: Any, screen: Screen, callback: Callable[[], Any]) -> None:
    await app.push_screen(screen)  # mounted once this returns: its first reads have started
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while loop.time() < deadline and any(
        w.node is screen and w.group in LOADS and not w.is_finished for w in app.workers
    ):
        await asyncio.sleep(0.05)
    if app.screen is screen:  # not if the technician left it meanwhile
        screen.call_later(callback)  # after the messages the first reads posted: the screen has its data
