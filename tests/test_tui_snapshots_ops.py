"""Layout of the benchmark and engines screens, as SVG snapshots: fixed size, clock, time zone and data
(canned runs and engines from tests/tui_fakes_jobs.py). Look at the SVGs before committing them."""

from __future__ import annotations

from textual.pilot import Pilot

from tests.test_tui_snapshots import SIZE, _app, _dashboard_settled, _fleet, until, utc  # noqa: F401
from tests.tui_fakes_jobs import BACKENDS, benchmark_list


def _bench_fleet():
    fleet = _fleet()
    agent = fleet.agents["gate-3"]
    agent.info = agent.info.model_copy(update={"backends": BACKENDS})
    agent.benchmarks_doc = benchmark_list()
    return fleet


def test_benchmark(snap_compare):
    from screens.benchmark import BenchmarkScreen

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: _dashboard_settled(pilot))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(pilot.app.screen, BenchmarkScreen))
        screen = pilot.app.screen
        await until(
            pilot,
            lambda: (
                screen.device is not None
                and screen.shown is not None
                and screen.query_one("#history").row_count == 2
            ),
        )

    fleet = _bench_fleet()
    assert snap_compare(_app(fleet, open_device=fleet.records[0]), terminal_size=SIZE, run_before=run_before)
