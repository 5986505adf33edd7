"""Helpers for the pilot tests that drive the console against a real agent on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord
from screens.app import FieldtuiApp

SIZE = (120, 40)


async def until(pilot: Pilot, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait (polling the screen) until ``check()``; fail saying ``what`` never came. No timing asserted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await pilot.pause(0.05)


def app_on(agent, tmp_path: Path, name: str = "dock-1") -> FieldtuiApp:
    """The console with ``agent`` saved (its token too) as ``name``, opened on its dashboard."""
    config = ConsoleConfig(tmp_path / "console")
    port = int(agent.url.rsplit(":", 1)[1])
    record = DeviceRecord(name=name, host="127.0.0.1", port=port, origin=["manual"])
    config.save_device(record, agent.token)
    return FieldtuiApp(Fleet(config, mdns=False), open_device=record)


def screen_text(app: App) -> str:
    """The whole screen as a person reads it: plain text, colours stripped, one line per row."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)
