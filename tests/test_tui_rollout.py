"""The TUI's rollout: marking devices in the list (space), their tags, the rollout dialog (R) and its
checks, and the rollout screen following a real rollout to two agents on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest
from textual.widgets import DataTable, Input, Static

from fieldtui.config import ConsoleConfig
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord
from fieldtui.rollout import RolloutPlan, RolloutState, RolloutStore
from screens.app import FieldtuiApp
from screens.devices import DevicesScreen
from screens.rollout import RolloutScreen
from screens.rollout_dialog import RolloutDialog
from tests import storemodels as sm
from tests.storeclient import listing
from tests.tui_fakes import T0, FakeFleet
from tests.tui_pilot import SIZE, until

SOURCE = "demo:?fps=15&size=160x120"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cell(table: DataTable, row: int, column: str) -> str:
    return str(table.get_cell_at((row, list(table.columns).index(column))))


def column(table: DataTable, name: str) -> list[str]:
    return [cell(table, i, name) for i in range(table.row_count)]


@pytest.fixture
def console(tmp_path, monkeypatch) -> ConsoleConfig:
    monkeypatch.setenv("FIELDTUI_DATA_DIR", str(tmp_path / "state"))  # where rollouts are saved
    return ConsoleConfig(tmp_path / "console")


def save(config: ConsoleConfig, name: str, port: int, token: str | None = "tok", tags=()) -> None:
    config.save_device(
        DeviceRecord(id=f"id-{name}", name=name, host="127.0.0.1", port=port, origin=["manual"]), token
    )
    if tags:
        config.set_tags(name, tags)


async def the_list(app: FieldtuiApp, pilot, rows: int) -> DataTable:
    await until(
        pilot,
        f"{rows} rows",
        lambda: isinstance(app.screen, DevicesScreen) and app.screen.query_one(DataTable).row_count == rows,
    )
    return app.screen.query_one(DataTable)


async def test_space_marks_devices_and_the_list_shows_their_tags(console):
    for name, tags in [("gate-1", ["entrance"]), ("gate-2", ["entrance", "line-2"]), ("dock-1", [])]:
        save(console, name, closed_port(), tags=tags)
    app = FieldtuiApp(Fleet(console, mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        table = await the_list(app, pilot, 3)
        names = column(table, "NAME")
        assert dict(zip(names, column(table, "TAGS"), strict=True)) == {
            "gate-1": "entrance",
            "gate-2": "entrance, line-2",
            "dock-1": "",
        }
        assert column(table, "MARK") == ["[ ]"] * 3
        await pilot.press("space")  # marks the first and moves to the next, as file managers do
        assert column(table, "MARK") == ["[x]", "[ ]", "[ ]"] and table.cursor_row == 1
        await pilot.press("up", "space", "space")  # the first unmarked again, the second marked
        assert column(table, "MARK") == ["[ ]", "[x]", "[ ]"]
        assert app.screen.marked == {f"id-{names[1]}"}
        # the filter finds devices by tag too, and keeps their marks
        await pilot.press("slash", *"line-2", "enter")
        await until(pilot, "the filtered list", lambda: table.row_count == 1)
        assert column(table, "NAME") == ["gate-2"]
        assert column(table, "MARK") == ["[x]" if names[1] == "gate-2" else "[ ]"]
        await pilot.press("space")  # marks what the filter shows
        await pilot.press("escape")
        await until(pilot, "the whole list", lambda: table.row_count == 3)
        assert app.screen.marked == {f"id-{names[1]}", "id-gate-2"}
        assert column(table, "MARK") == ["[x]" if f"id-{n}" in app.screen.marked else "[ ]" for n in names]


async def test_the_rollout_dialog_checks_every_field_and_starts_nothing_until_right(console, tmp_path):
    save(console, "gate-1", closed_port())
    save(console, "gate-2", closed_port())
    save(console, "no-token", closed_port(), token=None)
    model = sm.detector(tmp_path / "files" / "v2.onnx", seed=2)
    app = FieldtuiApp(Fleet(console, mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        table = await the_list(app, pilot, 3)
        await pilot.press("R")  # nothing marked: says how
        await until(
            pilot, "the hint", lambda: any("mark devices with space" in n.message for n in app._notifications)
        )
        assert isinstance(app.screen, DevicesScreen)
        table.move_cursor(row=column(table, "NAME").index("no-token"))
        await pilot.press("space", "R")  # a device without a token cannot take part
        await until(
            pilot,
            "the refusal",
            lambda: any("no token is saved for no-token" in n.message for n in app._notifications),
        )
        assert isinstance(app.screen, DevicesScreen)
        app.screen.marked.clear()
        for name in ("gate-1", "gate-2"):
            table.move_cursor(row=column(table, "NAME").index(name))
            await pilot.press("space")
        await pilot.press("R")
        await until(pilot, "the dialog", lambda: isinstance(app.screen, RolloutDialog))
        dialog = app.screen
        assert [e.device.name for e in dialog.devices] == ["gate-1", "gate-2"]

        async def submit(**values: str) -> str:
            for name, value in values.items():
                dialog.query_one(f"#{name}", Input).value = value
            dialog.query_one("#version", Input).focus()
            await pilot.press("enter")
            error = dialog.query_one("#error", Static)
            await until(pilot, "the verdict", lambda: "checking" not in str(error.render()))
            return str(error.render())

        good = {"model": str(model), "version": "v2", "canary": "1", "waves": "100%", "failures": "0"}
        for bad, message in [
            ({"model": ""}, "model file: choose one in the tree or type its path"),
            ({"model": str(tmp_path / "files" / "v9.onnx")}, "model file not found"),
            ({"version": "../v2"}, "version name '../v2' is not allowed: use 1-64 letters"),
            ({"canary": "two"}, "canary 'two': a number of devices"),
            ({"canary": "3"}, "canary 3: use 0 to 2"),
            ({"waves": "50%,25%"}, "waves '50%,25%': each percent must be larger"),
            ({"failures": "lots"}, "max failures 'lots': use a count"),
        ]:
            text = await submit(**{**good, **bad})
            assert message in text, (bad, text)
            assert isinstance(app.screen, RolloutDialog)
        assert not (tmp_path / "state").exists()  # nothing was saved, nothing started
        await pilot.press("escape")
        await until(pilot, "the list again", lambda: isinstance(app.screen, DevicesScreen))
        assert not (tmp_path / "state").exists()


@pytest.fixture
def two_agents(inproc_agent, tmp_path):
    agents = []
    for i in range(2):
        home = tmp_path / f"cam-{i}"
        home.mkdir(mode=0o700)
        (home / "config.toml").write_text("[models]\nprobation_s = 1.5\nprobation_min_frames = 3\n")
        agents.append(inproc_agent(home, source=SOURCE))
    return agents


async def test_the_rollout_screen_follows_a_real_rollout_to_two_agents(console, two_agents, tmp_path):
    for i, agent in enumerate(two_agents):
        save(console, f"cam-{i}", int(agent.url.rsplit(":", 1)[1]), token=agent.token)
    model = sm.detector(tmp_path / "files" / "v2.onnx", seed=2)
    app = FieldtuiApp(Fleet(console, mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        await the_list(app, pilot, 2)
        await pilot.press("space", "space", "R")
        await until(pilot, "the dialog", lambda: isinstance(app.screen, RolloutDialog))
        dialog = app.screen
        for name, value in {"model": str(model), "version": "v2", "canary": "1", "waves": "100%"}.items():
            dialog.query_one(f"#{name}", Input).value = value
        dialog.query_one("#failures", Input).focus()
        await pilot.press("enter")
        await until(pilot, "the rollout screen", lambda: isinstance(app.screen, RolloutScreen))
        screen = app.screen
        table = screen.query_one("#progress", DataTable)
        seen: set[str] = set()

        def stages() -> list[str]:
            if table.row_count == 2:
                seen.update(column(table, "STAGE"))
                return column(table, "STAGE")
            return []

        # p while the canary is on probation: it finishes, and the next wave waits for p again
        await until(
            pilot, "the canary's probation", lambda: stages()[:1] and stages()[0].startswith("probation")
        )
        await pilot.press("p")
        await until(pilot, "the pause", lambda: screen.state.status == "paused")
        await until(pilot, "the canary's verdict", lambda: stages() == ["done", "queued"], timeout=30)
        await pilot.pause(0.5)
        assert stages() == ["done", "queued"] and screen.state.status == "paused"
        assert "wave 2: 1 device(s) [▶ paused]" in str(screen.query_one("#waves", Static).render())
        # a paused rollout may be left (it is saved), and opened again from the list, where p resumes it
        await pilot.press("escape")
        await until(pilot, "the list again", lambda: isinstance(app.screen, DevicesScreen))
        rollout_id = screen.state.plan.id
        assert any(f"fieldtui rollout --resume {rollout_id}" in n.message for n in app._notifications)
        app.screen.open_last_rollout()
        await until(
            pilot,
            "the saved rollout",
            lambda: isinstance(app.screen, RolloutScreen) and app.screen.query("#progress"),
        )
        screen = app.screen
        table = screen.query_one("#progress", DataTable)
        await pilot.pause()
        assert screen.state.plan.id == rollout_id and stages() == ["done", "queued"]
        assert "PAUSED (stopped: p resumes)" in str(screen.query_one("#summary", Static).render())
        await pilot.press("p", "escape")  # resumed; and a running rollout is not left behind
        await until(
            pilot,
            "the refusal",
            lambda: any("runs from this screen" in n.message for n in app._notifications),
        )
        assert app.screen is screen
        await until(
            pilot,
            "the rollout's end",
            lambda: stages() and screen.state.status in ("done", "failed", "aborted"),
            timeout=60,
        )
        assert screen.state.status == "done", screen.state.abort_reason
        await until(
            pilot, "the last redraw", lambda: "DONE" in str(screen.query_one("#summary", Static).render())
        )
        assert column(table, "DEVICE") == ["cam-0", "cam-1"]
        assert column(table, "WAVE") == ["canary", "wave 2"]
        assert column(table, "STAGE") == ["done", "done"] and column(table, "VIA") == ["HTTP", "HTTP"]
        # the canary's probation was on screen with its time left while the second device waited
        assert any(s.startswith("probation, ") and s.endswith(" s left") for s in seen), seen
        assert "queued" in seen
        waves = str(screen.query_one("#waves", Static).render())
        assert waves == "canary: 1 device(s) [done]   wave 2: 1 device(s) [done]"
        summary = str(screen.query_one("#summary", Static).render())
        assert f"rollout {screen.state.plan.id}  v2 to 2 device(s)  DONE" in summary
        saved = json.loads((tmp_path / "state" / "rollouts" / f"{screen.state.plan.id}.json").read_text())
        assert saved["status"] == "done" and [d["stage"] for d in saved["devices"]] == ["done", "done"]
        for agent in two_agents:
            with agent.client() as c:
                assert listing(c).serving.version == "v2"
        await pilot.press("p")  # nothing left to pause: says so
        await until(pilot, "the note", lambda: any("not running" in n.message for n in app._notifications))
        await pilot.press("escape")
        await until(pilot, "the list again", lambda: isinstance(app.screen, DevicesScreen))


def saved_rollout() -> RolloutState:
    """A rollout stopped mid-wave (the laptop slept), one device at every stage the screen words."""
    names = ["gate-1", "dock-1", "dock-2", "yard-1", "yard-2", "yard-3", "gate-2", "gate-3"]
    plan = RolloutPlan(
        id="20261202-0915-3fa2",
        model="/models/v8.onnx",
        version="v8",
        sha256="3f" * 32,
        devices=[f"id-{n}" for n in names],
        canary=1,
        waves=[1, 5, 2],
        max_failures=2,
    )
    state = RolloutState.start(plan, {f"id-{n}": n for n in names})
    state.created_at = state.updated_at = T0 - 600
    state.current_wave = 1
    stages = [
        ("done", "passed probation", "http", {}),
        ("rolled_back", "confidence collapsed: 0.31 vs 0.88 for v7 over 60 s", "http", {}),
        ("failed", "sha256 mismatch: the upload was discarded and v7 keeps running", "http", {}),
        ("probation", "judged against v7", "ssh", {"probation_ends_at": T0 + 42}),
        ("uploading", "", "http", {"percent": 40.0}),
        ("unreachable", "no answer over HTTP nor SSH within 30 s", "", {}),
    ]
    for d, (stage, reason, via, extra) in zip(state.devices, stages, strict=False):
        for key, value in {"stage": stage, "reason": reason, "via": via, **extra}.items():
            setattr(d, key, value)
    return state


def test_rollout_screen_snapshot(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    app = FieldtuiApp(FakeFleet([]), clock=lambda: T0)

    async def run_before(pilot) -> None:
        await app.push_screen(RolloutScreen(saved_rollout(), None, RolloutStore(tmp_path)))
        await until(pilot, "the rollout screen", lambda: app.screen.query("#progress"))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
