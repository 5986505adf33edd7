"""Changing the saved devices by hand. Forgetting: ``fieldtui forget HOST`` and ``x`` in the device list
(asks first) remove the saved token and TLS pin, and nothing else. Adding: the dialog answers at once
for a host that is not an address, and saves only a device whose token it could check."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static

from fieldtui.cli.main import main
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


async def test_the_add_dialog_refuses_a_bad_or_unreachable_host_at_once_and_saves_nothing(tmp_path):
    from screens.add_device import AddDeviceScreen

    config = ConsoleConfig(tmp_path / "console")
    app = FieldtuiApp(Fleet(config, mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the device list", lambda: isinstance(app.screen, DevicesScreen))
        for host, words in (
            ("💥", "is not a saved device, host name or address"),
            ("127.0.0.1:9", "nothing was saved"),
        ):
            await pilot.press("a")
            await until(pilot, "the dialog", lambda: isinstance(app.screen, AddDeviceScreen))
            dialog = app.screen
            dialog.query_one("#host", Input).value = host
            dialog.query_one("#token", Input).value = "some-token"
            dialog.query_one("#token", Input).focus()
            await pilot.press("enter", "enter")  # token, then the fingerprint field submits
            error = dialog.query_one("#error", Static)
            await until(pilot, "the answer", lambda w=words, e=error: w in str(e.render()), timeout=10)
            assert isinstance(app.screen, AddDeviceScreen)  # still open: fix it, or escape
            await pilot.press("escape")
            await until(pilot, "the list again", lambda: isinstance(app.screen, DevicesScreen))
        assert config.load() == []
    assert app._exception is None
