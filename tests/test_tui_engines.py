"""The engines screen against a real agent on 127.0.0.1 (in-process, the demo model, the demo camera): the
runtimes and engines listed, a real INT8 rebuild through the dialog, its activation asked first, progress
and stages from the SSE job events, the result; a screen left mid-rebuild leaves no worker behind."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Log
from textual.worker import WorkerState

from fieldtui.protocol import Job, ModelList
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.dialogs import ConfirmDialog
from screens.engines import EnginesScreen
from screens.rebuild_dialog import RebuildDialog
from tests.tui_pilot import SIZE, app_on, until

SOURCE = "demo:?fps=20&size=320x240"


@pytest.fixture
def device(inproc_agent, tmp_path):
    home = tmp_path / "engines-home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    return inproc_agent(home, source=SOURCE, model=None)


async def _open(app: FieldtuiApp, pilot: Pilot) -> EnginesScreen:
    await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
    await pilot.press("e")
    await until(pilot, "the engines screen", lambda: isinstance(app.screen, EnginesScreen))
    screen = app.screen
    await until(pilot, "the listing", lambda: screen.listing is not None)
    return screen


async def _ask_rebuild(app: FieldtuiApp, pilot: Pilot, *, activate: bool) -> None:
    await pilot.press("r")
    await until(pilot, "the rebuild dialog", lambda: isinstance(app.screen, RebuildDialog))
    dialog = app.screen
    assert dialog.backend == "onnxruntime" and dialog.precision == "int8"  # what this device can build
    dialog.query_one("#frames", Input).value = "8"
    if activate:
        dialog.query_one("#activate").value = True
    dialog.query_one("#ok").focus()
    await pilot.press("enter")


async def test_rebuild_and_activate_through_the_ui(device, tmp_path):
    app = app_on(device, tmp_path, "gate-3")
    moves: list[Job] = []

    def hook(message) -> None:
        if isinstance(message, EnginesScreen.JobMoved):
            moves.append(message.job)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        screen = await _open(app, pilot)
        ort = next(r for r in screen.listing.runtimes if r.runtime == "onnxruntime")
        assert ort.can_build and "onnxruntime" in str(screen.query_one("#runtimes").render())
        assert screen.listing.engines == [] and "no engines built yet" in str(
            screen.query_one("#detail").render()
        )

        await _ask_rebuild(app, pilot, activate=True)
        await until(pilot, "the activation question", lambda: isinstance(app.screen, ConfirmDialog))
        assert "activate it on gate-3" in app.screen.question
        await pilot.press("y")
        await until(
            pilot,
            "the result",
            lambda: screen.result is not None or "✗" in screen.query_one("#progress").text,
            timeout=240,
        )
        result = screen.result
        assert result is not None, screen.query_one("#progress").text
        assert result.engine.fingerprint.precision == "int8" and result.size < result.source_size
        assert result.speedup is not None and result.agreement_f1 is not None and result.model_version
        shown = str(screen.query_one("#result").render())
        assert "size" in shown and "vs fp32" in shown and "agreement F1" in shown
        # Progress and stages came from the job's SSE events, each stage written to the log.
        assert moves[-1].state == "succeeded" and len({m.stage for m in moves}) >= 3
        log = "\n".join(screen.query_one(Log).lines)
        assert "calibrating on 8 frames" in log and "done in" in log
        table = screen.query_one("#engines", DataTable)
        await until(pilot, "the new engine listed", lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[0]) == "ok" and str(table.get_row_at(0)[2]) == "int8"
    with device.client() as c:  # activated through the model store
        models = ModelList.model_validate(c.get("/v1/models").json())
    assert models.current == result.model_version
    assert app._exception is None


async def test_leaving_mid_rebuild_leaves_no_worker_touching_the_screen(device, tmp_path):
    app = app_on(device, tmp_path, "gate-3")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        await _ask_rebuild(app, pilot, activate=False)
        await until(pilot, "the job", lambda: screen.job is not None)
        workers = [w for w in app.workers if w.node is screen and w.group == "job"]
        assert workers and not workers[0].is_finished
        await pilot.press("escape")
        await until(pilot, "the dashboard again", lambda: isinstance(app.screen, DashboardScreen))
        await until(pilot, "the rebuild worker to end", lambda: all(w.is_finished for w in workers))
        assert all(w.state == WorkerState.CANCELLED for w in workers)
        await pilot.pause(0.3)
        with device.client() as c:  # the build goes on on the device: stop it
            c.post(f"/v1/jobs/{screen.job.id}/cancel")
    assert app._exception is None
