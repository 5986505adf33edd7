"""The models screen against a real agent on 127.0.0.1: push, activate, roll back and delete through the
UI, checked through the agent's own API; a screen left mid-push leaves no worker behind touching it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static
from textual.worker import WorkerState

from fieldtui.client import AgentClient
from fieldtui.push import push_model
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.dialogs import ConfirmDialog
from screens.models import ModelsScreen
from screens.push_dialog import PushDialog
from tests import storemodels as sm
from tests.storeclient import activate, listing, upload, wait_for
from tests.tui_pilot import SIZE, app_on, until


@pytest.fixture
def device(inproc_agent, tmp_path):
    home = tmp_path / "device-home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    return inproc_agent(home, source="demo:?fps=20&size=160x120")


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "files"
    return {v: sm.detector(folder / f"{v}.onnx", seed=i) for i, v in enumerate(("v1", "v2"), start=1)}


def _serving(agent) -> str | None:
    with agent.client() as c:
        models = listing(c)
    return models.serving.version if models.serving else None


async def _open_models(app: FieldtuiApp, pilot: Pilot) -> ModelsScreen:
    await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
    await pilot.press("m")
    await until(pilot, "the models screen", lambda: isinstance(app.screen, ModelsScreen))
    screen = app.screen
    await until(pilot, "the listing", lambda: screen.listing is not None)
    return screen


async def _push(app: FieldtuiApp, pilot: Pilot, path: Path, version: str) -> None:
    await pilot.press("p")
    await until(pilot, "the push dialog", lambda: isinstance(app.screen, PushDialog))
    app.screen.query_one("#path", Input).value = str(path)
    app.screen.query_one("#version", Input).focus()
    await pilot.press(*version, "enter")
    await until(pilot, "the dialog to close", lambda: isinstance(app.screen, ModelsScreen))


async def test_push_activate_rollback_and_delete_through_the_ui(device, files, tmp_path, monkeypatch):
    app = app_on(device, tmp_path)
    steps: list[str] = []  # the phases the progress line was told about
    stages: list[str] = []  # the activation and rollback stages, as the job events told them
    reads: list[str] = []  # GET /v1/jobs/{id}: once per job at most (the catch-up), the rest is SSE
    read_job = AgentClient.job

    async def counted(self, job_id: str):
        reads.append(job_id)
        return await read_job(self, job_id)

    monkeypatch.setattr(AgentClient, "job", counted)

    def hook(message) -> None:
        if isinstance(message, ModelsScreen.StepMade):
            steps.append(message.step.phase)
            if message.step.phase in ("activating", "rolling back"):
                stages.append(message.step.stage)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        screen = await _open_models(app, pilot)
        for version in ("v1", "v2"):
            await _push(app, pilot, files[version], version)
            await until(
                pilot, f"{version} serving", lambda v=version: _serving(device) == v and not screen.busy
            )
        assert "hashing" in steps and "uploading" in steps
        # Activation progress came from the SSE job events: several stages, the job read at most once.
        assert len(set(stages)) >= 2, stages
        assert reads and max(reads.count(j) for j in reads) == 1
        await until(pilot, "the new listing", lambda: screen.listing.serving.version == "v2")
        table = screen.query_one("#versions", DataTable)
        assert {str(table.get_row_at(i)[1]) for i in range(table.row_count)} == {"v1", "v2"}
        assert str(table.get_row(screen.listing.serving.version)[0]) == "●"

        await pilot.press("r")  # rollback asks first; "n" keeps v2
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await pilot.pause(0.2)
        assert _serving(device) == "v2"
        await pilot.press("r")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, "v1 serving again", lambda: _serving(device) == "v1" and not screen.busy)
        await until(
            pilot, "the rollback in the history", lambda: screen.listing.history[0].action == "rollback"
        )
        history = screen.query_one("#history", DataTable)
        assert "rollback requested" in [str(c) for c in history.get_row_at(0)]

        # Delete: the serving version is refused without a dialog, v2 asks first and goes.
        table.move_cursor(row=table.get_row_index("v1"))
        await pilot.press("d")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ModelsScreen)
        table.move_cursor(row=table.get_row_index("v2"))
        await pilot.press("d")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, "v2 gone", lambda: table.row_count == 1)
        with device.client() as c:
            assert [v.version for v in listing(c).versions] == ["v1"]
    assert app._exception is None


async def test_a_bad_version_name_is_caught_in_the_dialog(device, files, tmp_path):
    app = app_on(device, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _open_models(app, pilot)
        await pilot.press("p")
        await until(pilot, "the push dialog", lambda: isinstance(app.screen, PushDialog))
        app.screen.query_one("#path", Input).value = str(files["v1"])
        app.screen.query_one("#version", Input).focus()
        await pilot.press(*"../v1", "enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, PushDialog)
        assert "version:" in str(app.screen.query_one("#error").render())
    assert app._exception is None


async def test_leaving_mid_push_leaves_no_worker_touching_the_screen(device, files, tmp_path):
    pushed = asyncio.Event()

    async def held_push(client, path, version, **kwargs):  # the real push and activation, then a hang
        result = await push_model(client, path, version, **{**kwargs, "activate": True})
        pushed.set()
        await asyncio.Event().wait()
        return result

    app = app_on(device, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        screen = ModelsScreen(dash.api, dash.record, push=held_push)
        await app.push_screen(screen)
        await until(pilot, "the listing", lambda: screen.listing is not None)
        await _push(app, pilot, files["v1"], "v1")
        workers = [w for w in app.workers if w.node is screen and w.group == "store"]
        await until(pilot, "the upload", pushed.is_set)
        assert workers and not workers[0].is_finished
        await pilot.press("escape")
        await until(pilot, "the dashboard again", lambda: app.screen is dash)
        await until(pilot, "the push worker to end", lambda: all(w.is_finished for w in workers))
        assert all(w.state == WorkerState.CANCELLED for w in workers)
        await pilot.pause(0.3)
        assert _serving(device) == "v1"
    assert app._exception is None


async def test_a_failed_version_asks_naming_why_and_no_rollback_is_offered_that_would_be_refused(
    device, tmp_path
):
    nan = sm.nan_detector(tmp_path / "nan.onnx")
    with device.client() as c:
        assert upload(c, nan, "nan").status_code == 201
        assert activate(c, "nan").state == "failed"  # NaN on live frames: a verdict with a reason
    app = app_on(device, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_models(app, pilot)
        line = str(screen.query_one("#serving").render())
        assert "no rollback: nothing else has passed probation" in line
        await pilot.press("r")  # the configured model serves and nothing passed: the agent would say 409
        await pilot.pause(0.2)
        assert isinstance(app.screen, ModelsScreen)
        assert any("nothing to roll back to" in n.message for n in app._notifications)
        table = screen.query_one("#versions", DataTable)
        assert str(table.get_row("nan")[3]) == "failed"
        table.move_cursor(row=table.get_row_index("nan"))
        await pilot.press("a")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        assert app.screen.question.startswith("nan failed before. Activate it again")
        assert "nan gives NaN values on live frames" in app.screen.detail
        await pilot.press("n")  # no: nothing is tried
        await pilot.pause(0.2)
        with device.client() as c:
            assert [h.outcome for h in listing(c).history if h.action == "activate"] == ["failed"]
        await pilot.press("a")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")  # yes: tried again on purpose (forced), and it fails again
        await until(pilot, "the second try", lambda: not screen.busy and len(_activations(device)) == 2)
        assert _activations(device) == ["failed", "failed"]
        # pushing the same file again with "activate" ticked asks the same question before activating
        await pilot.press("p")
        await until(pilot, "the push dialog", lambda: isinstance(app.screen, PushDialog))
        app.screen.query_one("#path", Input).value = str(nan)
        app.screen.query_one("#version", Input).focus()
        await pilot.press(*"nan", "enter")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmDialog))
        assert "nan gives NaN values on live frames" in app.screen.detail
        await pilot.press("n")
        await until(pilot, "the push's end", lambda: not screen.busy)
        assert any(n.message.endswith("; not activated (failed before)") for n in app._notifications)
        assert _activations(device) == ["failed", "failed"]
    assert app._exception is None


def _activations(agent) -> list[str]:
    with agent.client() as c:
        return [h.outcome for h in listing(c).history if h.action == "activate"]


async def test_an_automatic_rollback_is_explained_in_a_toast_and_the_dashboards_event_line(
    inproc_agent, tmp_path
):
    home = tmp_path / "probation-home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 2\nprobation_min_frames = 5\n")
    agent = inproc_agent(home, source="demo:?fps=20&size=320x240")
    files = sm.make(tmp_path / "files", "v1", "weak")
    with agent.client() as c:
        for name in ("v1", "weak"):
            assert upload(c, files[name], name).status_code == 201
        assert activate(c, "v1").state == "succeeded"
        await asyncio.to_thread(wait_for, lambda: listing(c).history[0].outcome == "good", 20)
    app = app_on(agent, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
        dash = app.screen
        await until(pilot, "the first sample", lambda: dash.telemetry.latest is not None)
        with agent.client() as c:
            assert (await asyncio.to_thread(activate, c, "weak")).state == "succeeded"
        await until(
            pilot, "the rollback", lambda: dash.last_event is not None and "auto-rollback" in dash.last_event
        )
        toast = next(n for n in app._notifications if n.title == "Automatic rollback")
        assert toast.message.startswith("auto-rollback from weak to v1: confidence 0.27 vs 0.9")
        assert toast.severity == "warning"
        findings = dash.query_one("#findings", Static)

        def event_line() -> str:
            text = str(findings.render())
            return text.split("↺", 1)[1] if "↺" in text else ""

        await until(pilot, "the event line", lambda: "auto-rollback" in event_line())
        line = str(findings.render()).split("↺", 1)[1]
        assert "auto-rollback from weak to v1: confidence 0.27 vs 0.9" in line
    assert app._exception is None
