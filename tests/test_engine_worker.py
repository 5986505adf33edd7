"""An engine build in a child process (agent/engines/worker.py): the same result as in this process,
progress relayed while the child runs, a cancel that stops it, and nothing left in staging."""

from __future__ import annotations

import multiprocessing

import pytest

from agent.bench.frames import scene_frames
from agent.core.jobs import JobCancelled
from agent.engines.build import BuildOptions, BuildSource
from agent.engines.store import EngineStore
from agent.engines.worker import rebuild_in_child
from agent.inference.detector import demo_model_path, file_sha256


@pytest.fixture
def source() -> BuildSource:
    path = demo_model_path()
    return BuildSource(path, file_sha256(path), None)


def test_a_build_in_a_child_gives_the_engine_and_its_progress(tmp_path, source) -> None:
    store = EngineStore(tmp_path / "engines")
    frames = scene_frames(12, 320, 240)
    seen: list[tuple[str, int]] = []

    def progress(fraction: float, stage: str) -> None:
        seen.append((stage, len(multiprocessing.active_children())))

    result = rebuild_in_child(
        store,
        source,
        BuildOptions(precision="int8", calibration=frames[:8], held_out=frames[8:]),
        check_cancelled=lambda: None,
        progress=progress,
    )
    assert result.engine.fingerprint.precision == "int8" and result.calibration_frames == 8
    assert store.path(result.engine.key).is_file()
    assert seen and all(children >= 1 for _, children in seen)  # reported while the child ran
    assert not any(store.staging.iterdir())


def test_a_cancel_stops_the_child_and_leaves_nothing(tmp_path, source) -> None:
    store = EngineStore(tmp_path / "engines")
    frames = scene_frames(8, 320, 240)
    calls = {"n": 0}

    def cancel_soon() -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        rebuild_in_child(
            store,
            source,
            BuildOptions(precision="int8", calibration=frames, held_out=frames[:2]),
            check_cancelled=cancel_soon,
            progress=lambda f, s: None,
        )
    assert not multiprocessing.active_children()
    assert not store.list() and not (store.staging.exists() and any(store.staging.iterdir()))
