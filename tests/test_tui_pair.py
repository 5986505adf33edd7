"""Pairing over SSH from the device list, against a real SSH server running the real agent CLI: an
unknown host key is shown with its fingerprint and accepted only on yes; a changed key is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from screens.app import FieldtuiApp
from screens.devices import DevicesScreen
from screens.dialogs import ConfirmDialog
from screens.pair_dialog import PairDialog
from tests.ssh_server import SSHTestServer
from tests.tui_pilot import SIZE, until


@pytest.fixture
def ssh_server(tmp_path: Path, agent_home: Path):
    server = SSHTestServer(tmp_path, agent_home).start()
    yield server
    server.stop()


@pytest.fixture
def ssh_dir(tmp_path: Path, ssh_server: SSHTestServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = ssh_server.write_client_dir(tmp_path / "dot-ssh", "dock-1", known=False)
    monkeypatch.setenv("FIELDTUI_SSH_DIR", str(folder))
    return folder


def _state(screen) -> str:
    return str(screen.query_one("#state").render())


async def _pair(app: FieldtuiApp, pilot: Pilot) -> PairDialog:
    await pilot.press("p")
    await until(pilot, "the pair dialog", lambda: isinstance(app.screen, PairDialog))
    dialog = app.screen
    dialog.query_one("#host", Input).value = "dock-1"
    await pilot.press("enter")
    return dialog


async def test_pair_confirms_an_unknown_key_and_refuses_a_changed_one(
    start_agent, agent_home, ssh_server, ssh_dir, tmp_path
):
    agent = start_agent(agent_home)
    config = ConsoleConfig(tmp_path / "console")
    app = FieldtuiApp(Fleet(config, mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the device list", lambda: isinstance(app.screen, DevicesScreen))
        await _pair(app, pilot)
        await until(pilot, "the host-key question", lambda: isinstance(app.screen, ConfirmDialog))
        assert ssh_server.fingerprint in str(app.screen.query_one(".detail").render())
        await pilot.press("n")  # not trusted: nothing saved, nothing remembered
        await until(pilot, "the refusal", lambda: "not accepted" in _state(app.screen))
        assert not (ssh_dir / "known_hosts").exists() and config.load() == []

        await pilot.press("enter")
        await until(pilot, "the host-key question", lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, "the device list again", lambda: isinstance(app.screen, DevicesScreen))
        saved = config.load()
        assert len(saved) == 1 and saved[0].token == agent.token
        assert saved[0].device.api_url == agent.url and saved[0].device.ssh.host == "dock-1"
        known = (ssh_dir / "known_hosts").read_text()
        assert f"[127.0.0.1]:{ssh_server.port}" in known

        ssh_server.replace_host_key()
        dialog = await _pair(app, pilot)
        await until(pilot, "the warning", lambda: "CHANGED" in _state(dialog))
        assert ssh_server.fingerprint in _state(dialog) and isinstance(app.screen, PairDialog)
        assert (ssh_dir / "known_hosts").read_text() == known
    assert app._exception is None
