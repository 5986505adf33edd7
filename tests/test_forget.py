"""Forgetting a device: ``fieldtui forget HOST`` and ``x`` in the device list (asks first) remove the
saved token and TLS pin from the console's config, and nothing else."""

from __future__ import annotations

from textual.widgets import DataTable

from fieldtui.cli import main
from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord
from screens.app import FieldtuiApp
from screens.devices import DevicesScreen
from screens.dialogs import ConfirmDialog
from tests.tui_pilot import SIZE, until


def _saved(config: ConsoleConfig) -> list[str]:
    return sorted(e.device.name for e in config.load())


def test_forget_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path))
    config = ConsoleConfig(tmp_path)
    config.save_device(DeviceRecord(name="dock-1", host="127.0.0.1", port=9), "tok-1")
    config.save_device(DeviceRecord(name="gate-2", host="127.0.0.2", port=9), "tok-2")
    assert main(["forget", "dock-1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("forgot dock-1 (no id) at http://127.0.0.1:9: its token is no longer saved")
    assert _saved(config) == ["gate-2"] and "tok-1" not in config.path.read_text()
    assert main(["forget", "dock-1"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "fieldtui: no saved device matches 'dock-1': `fieldtui discover` lists them"
    )


async def test_forget_in_the_device_list_asks_first(tmp_path):
    config = ConsoleConfig(tmp_path / "console")
    config.save_device(DeviceRecord(name="dock-1", host="127.0.0.1", port=9), "tok-1")
    app = FieldtuiApp(Fleet(config, mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot,
            "the row",
            lambda: isinstance(app.screen, DevicesScreen) and app.screen.query_one(DataTable).row_count == 1,
        )
        await pilot.press("x")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        assert app.screen.question == "Forget dock-1 (http://127.0.0.1:9)?"
        await pilot.press("n")  # no: still saved
        await pilot.pause(0.1)
        assert _saved(config) == ["dock-1"]
        await pilot.press("x")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, "the row gone", lambda: app.screen.query_one(DataTable).row_count == 0)
        assert _saved(config) == []
        assert any(n.title == "Device forgotten" for n in app._notifications)
    assert app._exception is None
