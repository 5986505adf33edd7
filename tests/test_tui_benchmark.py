"""The benchmark screen against a real agent on 127.0.0.1 (tiny model, demo camera): a run through the
UI from the form to the results, its progress fed by the agent's SSE job events, the comparison with the
previous run, the history, and a screen left mid-run that leaves no worker behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, SelectionList
from textual.worker import WorkerState

from agent.bench.runner import model_for_precision
from agent.inference.backends import get_backend
from fieldtui.protocol import BenchmarkConfig, BenchmarkResult, Job, comparison_text
from screens.app import FieldtuiApp
from screens.benchmark import BenchmarkScreen, heat, parse_numbers
from screens.dashboard import DashboardScreen
from screens.widgets.configbars import ConfigBars
from tests.tui_pilot import SIZE, app_on, until


async def _open(app: FieldtuiApp, pilot: Pilot) -> BenchmarkScreen:
    await until(pilot, "the dashboard", lambda: isinstance(app.screen, DashboardScreen))
    await pilot.press("b")
    await until(pilot, "the benchmark screen", lambda: isinstance(app.screen, BenchmarkScreen))
    screen = app.screen
    await until(pilot, "the backends", lambda: screen.device is not None and screen.history is not None)
    return screen


def test_numbers_in_the_form():
    assert parse_numbers("default, 1, 4 4", default_word="default") == [None, 1, 4]
    assert parse_numbers("") == []
    with pytest.raises(ValueError, match="x"):
        parse_numbers("1, x")
    with pytest.raises(ValueError):
        parse_numbers("default")  # batch sizes have no default word


async def test_a_benchmark_through_the_ui_with_sse_progress_and_comparison(agent_inproc, tmp_path):
    app = app_on(agent_inproc, tmp_path)
    moves: list[Job] = []

    def hook(message) -> None:
        if isinstance(message, BenchmarkScreen.JobMoved):
            moves.append(message.job)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        screen = await _open(app, pilot)
        backends = screen.query_one("#backends", SelectionList)
        assert backends.selected == ["onnxruntime"]  # the one this device runs, chosen for the technician
        assert not screen.history.runs  # a fresh device: no history yet
        screen.query_one("#threads", Input).value = "1, 2"
        screen.query_one("#iterations", Input).value = "5"
        await pilot.press("ctrl+r")
        await until(pilot, "the first run's results", lambda: screen.shown is not None and not screen.running)
        first = screen.shown
        assert [r.config.threads for r in first.results] == [1, 2]
        assert all(r.status == "ok" and r.fps and r.comparison is None for r in first.results)
        table = screen.query_one("#results", DataTable)
        assert table.row_count == 2 and "first run" in str(table.get_row_at(0)[-1])
        assert screen.query_one(ConfigBars).results == first.results
        # Progress came from the agent's job events over SSE, and ended with the job.
        assert moves and moves[-1].state == "succeeded" and moves[-1].id == first.job_id
        assert any(m.state == "running" for m in moves)

        # The same configurations again: each is compared with the first run.
        await pilot.press("ctrl+r")
        await until(pilot, "the second run", lambda: screen.shown is not first and not screen.running)
        second = screen.shown
        assert second.id != first.id
        assert all(r.comparison is not None and r.comparison.previous_id for r in second.results)
        table = screen.query_one("#results", DataTable)
        verdict = str(table.get_row_at(0)[-1])
        # "same within noise (±x%): …" or "worse: … (noise ±x%)": a real change here is noise or a busy CPU
        assert (
            verdict.split()[0].rstrip(":") in ("better", "worse", "same")
            and "p50" in verdict
            and "fps" in verdict
        )
        assert verdict == comparison_text(second.results[0].comparison)  # the words of `fieldtui bench`
        # memory and heat, as the CLI shows them
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[6:8] == ["rss MB", "°C"]
        row = table.get_row_at(0)
        assert float(row[6]) == pytest.approx(second.results[0].system.rss_mb, abs=0.5)
        assert row[7] == heat(second.results[0])
        # a skipped INT8 row says how to build the engine from this console, with the device's name
        _, why = model_for_precision(get_backend("onnxruntime"), Path("m.onnx"), "int8")
        int8 = BenchmarkResult(
            config=BenchmarkConfig(backend="onnxruntime", precision="int8"), status="skipped", reason=why
        )
        screen.show_run(second.model_copy(update={"results": [*second.results, int8]}))
        said = str(table.get_row_at(table.row_count - 1)[-1])
        assert f"fieldtui rebuild {screen.record.name} --precision int8" in said
        history = screen.query_one("#history", DataTable)
        await until(pilot, "two runs in the history", lambda: history.row_count == 2)

        # Enter on the older run shows it again.
        history.focus()
        history.move_cursor(row=1)
        await pilot.press("enter")
        await until(pilot, "the first run shown", lambda: screen.shown.id == first.id)
    assert app._exception is None


async def test_bad_form_input_says_what_and_starts_nothing(agent_inproc, tmp_path):
    app = app_on(agent_inproc, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#batches", Input).value = "1, big"
        await pilot.press("ctrl+r")
        assert "big is not a positive whole number" in str(screen.query_one("#error").render())
        assert not screen.running
        with agent_inproc.client() as c:
            assert c.get("/v1/benchmarks").json()["runs"] == []
    assert app._exception is None


async def test_leaving_mid_run_leaves_no_worker_touching_the_screen(agent_inproc, tmp_path):
    app = app_on(agent_inproc, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot)
        screen.query_one("#iterations", Input).value = "5000"  # long enough to leave mid-run
        await pilot.press("ctrl+r")
        await until(pilot, "the job", lambda: screen.job is not None)
        workers = [w for w in app.workers if w.node is screen and w.group == "job"]
        assert workers and not workers[0].is_finished
        await pilot.press("escape")
        await until(pilot, "the dashboard again", lambda: isinstance(app.screen, DashboardScreen))
        await until(pilot, "the run worker to end", lambda: all(w.is_finished for w in workers))
        assert all(w.state == WorkerState.CANCELLED for w in workers)
        await pilot.pause(0.3)  # an update arriving now would have nowhere to go (and would raise)
        # The job goes on on the device and ends in the history.
        job_id = screen.job.id
        with agent_inproc.client() as c:
            c.post(f"/v1/jobs/{job_id}/cancel")
    assert app._exception is None
