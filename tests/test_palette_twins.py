"""Every action from the keyboard, the palette and the command line.

- Every key of every screen has a command-line twin (screens/twins.py) that the CLI's parser has, or is
  navigation; the table names no action a screen lacks.
- On each screen, ctrl+p reaches every action its keys do, and on the dashboard the actions of the
  device's other screens ("roll" finds the rollback, which then runs as its key does).
- ``o`` on a device never paired over SSH says the exact command that pairs it.
- The Trio screen sets the endpoint and the write-only key (an input never filled from the agent), and a
  rule naming classes the model lacks is refused in the form with the model's classes, nothing changed.

Driven with Textual's pilot against one real agent on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import importlib
import io
import pkgutil

import pytest
from rich.console import Console
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.screen import Screen
from textual.widgets import Input

import screens
from fieldtui.cli.main import build_parser
from screens.app import FieldtuiApp
from screens.benchmark import BenchmarkScreen
from screens.dashboard import DashboardScreen
from screens.devices import DevicesScreen
from screens.engines import EnginesScreen
from screens.logs import LogsScreen
from screens.models import ModelsScreen
from screens.palette import action_name
from screens.trio import TrioScreen
from screens.trio_rules import RulesDialog
from screens.trio_settings import SettingsDialog
from screens.twins import NAVIGATION, TWINS
from tests.tui_pilot import SIZE, app_on, until

KEY = "sk-palette-41c2d3e4f5a6b7c8d9"


def _action(binding) -> str:
    b = binding if isinstance(binding, Binding) else Binding(*binding)
    return b.action.split("(", 1)[0]


def _screen_classes() -> dict[str, type[Screen]]:
    found: dict[str, type[Screen]] = {}
    for info in pkgutil.walk_packages(screens.__path__, "screens."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Screen) and obj.__module__ == module.__name__:
                found[obj.__name__] = obj
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_screen_action_has_a_command_line_twin_the_parser_has():
    classes = _screen_classes()
    assert {"DevicesScreen", "DashboardScreen", "ModelsScreen", "TrioScreen", "LogsScreen"} <= set(classes)
    missing = []
    for name, cls in sorted(classes.items()):
        for binding in cls.__dict__.get("BINDINGS", []):
            action = _action(binding)
            if action not in TWINS.get(name, {}) and action not in NAVIGATION:
                missing.append(f"{name}: {action}")
    for binding in FieldtuiApp.BINDINGS:
        if _action(binding) not in NAVIGATION:
            missing.append(f"FieldtuiApp: {_action(binding)}")
    assert not missing, f"keys without a command-line twin in screens/twins.py: {missing}"

    parsers = _subcommands(build_parser())
    wrong = []
    for name, twins in TWINS.items():
        actions = (
            {_action(b) for b in classes[name].__dict__.get("BINDINGS", [])} if name in classes else set()
        )
        for action, twin in twins.items():
            if action not in actions:
                wrong.append(f"{name}.{action}: no such key on the screen")
            command, *flags = twin.split()
            if command not in parsers:
                wrong.append(f"{name}.{action}: `fieldtui {command}` does not exist")
                continue
            options = {o for a in parsers[command]._actions for o in a.option_strings}
            wrong += [f"{name}.{action}: `fieldtui {command}` has no {f}" for f in flags if f not in options]
    assert not wrong, wrong


# --- the palette, against a real agent -----------------------------------------------------------------


def _palette_actions(app: FieldtuiApp, screen: Screen) -> set[str]:
    return {a for c in app.get_system_commands(screen) if (a := action_name(c.callback))}


def _enabled_actions(screen: Screen) -> set[str]:
    actions = {_action(b) for b in type(screen).__dict__.get("BINDINGS", [])}
    return {a for a in actions - NAVIGATION if screen.check_action(a, ()) is not False}


def _form_open(app: FieldtuiApp, cls: type) -> bool:
    """``cls`` is on top, composed, and has the focus (its on_mount ran)."""
    screen = app.screen
    return isinstance(screen, cls) and app.focused is not None and app.focused.screen is screen


def _text(widget) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


@pytest.fixture
def app(module_agent, tmp_path) -> FieldtuiApp:
    with module_agent.client() as c:  # a known start: no key, the default endpoint and rules
        c.put("/v1/forwarding", json={"base_url": "https://trio.machinefi.com/api", "api_key": ""})
        c.put("/v1/forwarding", json={"rules": {}}).raise_for_status()
    return app_on(module_agent, tmp_path, "dock-1")


async def test_the_palette_reaches_every_action_of_every_screen_and_o_says_how_to_pair(app):
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dashboard = app.screen
        devices = app.screen_stack[1]
        assert isinstance(devices, DevicesScreen)

        # `o` on a device never paired over SSH: the exact command that pairs it
        await pilot.press("o")
        await until(pilot, "the hint", lambda: any("fieldtui pair" in n.message for n in app._notifications))
        (note,) = [n for n in app._notifications if "fieldtui pair" in n.message]
        assert "`fieldtui pair 127.0.0.1`" in note.message and "not paired over SSH" in note.message

        # the device list: `open` is the palette's "Open NAME" (screens/commands.py), the rest commands
        assert _enabled_actions(devices) - {"open"} <= _palette_actions(app, devices)
        assert _enabled_actions(dashboard) <= _palette_actions(app, dashboard)
        reach = {c.title for c in app.get_system_commands(dashboard)}
        assert {
            "Models: Roll back the model",
            "Trio: Set Trio endpoint and API key",
            "Logs: Next log level",
        } <= reach
        for cls in (ModelsScreen, BenchmarkScreen, EnginesScreen, TrioScreen, LogsScreen):
            screen = cls(dashboard.api, dashboard.record)  # each screen's own commands cover its keys
            own = {a for c in screen.commands() if (a := action_name(c.callback))}
            assert _enabled_actions(screen) <= own, (cls.__name__, _enabled_actions(screen) - own)
            # and from the dashboard, each of them is one palette entry away
            assert own <= {action_name(c.callback) for c in app.get_system_commands(dashboard)}

        # typed, as a technician does: "roll" on the dashboard finds the rollback and runs it as `r` would
        await pilot.press("ctrl+p")
        await until(pilot, "the palette", lambda: _form_open(app, CommandPalette))
        await pilot.press(*"roll")
        results = app.screen.query_one(CommandList)

        def prompts() -> list[str]:
            return [str(results.get_option_at_index(i).prompt) for i in range(results.option_count)]

        await until(pilot, "a hit for roll", lambda: any("Roll back the model" in p for p in prompts()))
        assert "Roll back the model" in prompts()[0], prompts()
        await pilot.press("enter")
        await until(pilot, "the models screen", lambda: isinstance(app.screen, ModelsScreen))
        # a fresh agent has nothing to roll back to: the rollback says so, as its key does
        await until(
            pilot,
            "the rollback's answer",
            lambda: any("nothing to roll back to" in n.message for n in app._notifications),
        )
        # on the models screen, every other screen's actions are reached through the dashboard
        offered = _palette_actions(app, app.screen)
        assert {"trio", "benchmark", "engines", "logs", "restart", "source", "configure", "test"} <= offered
    assert app._exception is None


async def test_trio_endpoint_and_write_only_key_and_refused_classes(app, module_agent):
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("f")
        await until(pilot, "the Trio screen", lambda: isinstance(app.screen, TrioScreen))
        trio = app.screen
        await until(pilot, "the settings", lambda: trio.state is not None)
        assert "not set" in _text(trio.query_one("#settings"))

        await pilot.press("c")
        await until(pilot, "the settings form", lambda: _form_open(app, SettingsDialog))
        form = app.screen
        key_input = form.query_one("#api_key", Input)
        assert key_input.value == "" and key_input.password and "not set" in key_input.placeholder
        assert app.focused is form.query_one("#base_url", Input)
        form.query_one("#base_url", Input).value = "http://attacker.example:8479"
        key_input.value = KEY
        await pilot.press("enter")  # refused by the agent: the form stays, with its line
        await until(pilot, "the refusal", lambda: "must be https://" in _text(form.query_one("#error")))
        assert app.screen is form and KEY not in _text(form.query_one("#error"))
        form.query_one("#base_url", Input).value = "https://trio.example.test/api"
        form.query_one("#stream_url", Input).value = "rtsp://cam.example.test/live"
        await pilot.press("enter")
        await until(
            pilot,
            "the saved settings",
            lambda: app.screen is trio and trio.state.base_url.endswith("test/api"),
        )
        settings = _text(trio.query_one("#settings"))
        assert "set (key file)" in settings and "rtsp://cam.example.test/live" in settings
        assert (module_agent.home / "trio_api_key").read_text().strip() == KEY

        await pilot.press("c")  # opened again: the key field is empty, and says a key is set
        await until(pilot, "the form again", lambda: _form_open(app, SettingsDialog))
        again = app.screen.query_one("#api_key", Input)
        assert again.value == "" and again.placeholder.startswith("set (key file)")
        await pilot.press("escape")

        await pilot.press("e")
        await until(pilot, "the rules form", lambda: _form_open(app, RulesDialog))
        rules = app.screen
        rules.query_one("#classes", Input).value = "cir©le, <script>"
        await pilot.press("enter")
        await until(pilot, "the refusal", lambda: "are not classes" in _text(rules.query_one("#error")))
        error = _text(rules.query_one("#error"))
        assert "circle, square, triangle, cross" in error and app.screen is rules
        assert rules.query_one("#classes", Input).value == "cir©le, <script>"  # nothing typed is lost
        await pilot.press("escape")
        for text in (_text(trio.query_one("#settings")), _text(trio.query_one("#rules"))):
            assert KEY not in text and KEY[:6] not in text and KEY[-4:] not in text
    with module_agent.client() as c:
        assert c.get("/v1/forwarding").json()["rules"]["classes"] == []
    assert app._exception is None
