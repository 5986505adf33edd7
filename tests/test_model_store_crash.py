"""The agent SIGKILLed at each step of a push and of an activation (fault points armed through
``FIELDTUI_AGENT_FAULT``), then started again on the same home: it serves a complete, verified model,
nothing half-done is left in the store, and the history says what happened.

Each fault point costs one agent subprocess (the one that dies); the restart runs in this process on
the same home (the same start-up code as ``serve``: AgentService.create and reconcile), which keeps the
matrix quick.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import httpx
import pytest

from agent.core.faults import ACTIVATE_POINTS, FAULT_ENV, PUSH_POINTS
from fieldtui.protocol import ModelList
from tests import storemodels as sm
from tests.storeclient import listing

SOURCE = "demo:?fps=15&size=160x120"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, Path]:
    """A home with v1 current (made with the agent stopped, so loaded at the first start) and v2 stored;
    and the v2 file, for the push faults."""
    from agent.core.state import StateDB
    from agent.store.catalog import ModelCatalog
    from agent.store.history import ModelHistory
    from agent.store.models import ModelStore
    from agent.store.settings import ModelSettings

    files = tmp_path_factory.mktemp("crash-files")
    v1, v2 = sm.detector(files / "v1.onnx", seed=1), sm.detector(files / "v2.onnx", seed=2)
    home = tmp_path_factory.mktemp("crash-template")
    (home / "config.toml").write_text("[models]\nprobation_s = 30\nprobation_min_frames = 3\n")
    db = StateDB(home / "state.db")
    manager = ModelCatalog(ModelStore(home / "models", ModelSettings()), ModelHistory(db))
    manager.add_file(v1, "v1", None, source="test")
    manager.activate_offline("v1")
    manager.add_file(v2, "v2", None, source="test")
    db.close()
    return home, v2


def fresh_home(template_home: Path, tmp_path: Path, with_v2: bool) -> Path:
    home = tmp_path / "home"
    shutil.copytree(template_home, home, symlinks=True)
    home.chmod(0o700)
    if not with_v2:
        shutil.rmtree(home / "models" / "v2")
    return home


def crash(start_agent, home: Path, point: str, action) -> None:
    agent = start_agent(home, source=SOURCE, env={FAULT_ENV: f"{point}:v2"})
    with agent.client(timeout=60) as c:
        assert listing(c).serving.version == "v1"
        with contextlib.suppress(httpx.TransportError):  # the agent dies under the request: the point
            action(c)
    assert agent.proc.wait(60) == -9, agent.stderr()
    assert f"fault point {point} reached for v2" in (home / "agent.log").read_text()


def check_restart(inproc_agent, home: Path) -> ModelList:
    """Start again on the same home: the serving model is v1, complete and verified, nothing staged."""
    from agent.store.models import ModelStore

    agent = inproc_agent(home, source=SOURCE)
    with agent.client() as c:
        models = listing(c)
        status = c.get("/v1/status").json()
    store = ModelStore(home / "models")
    assert models.serving.version == "v1" and models.current == "v1"
    assert store.verify("v1").sha256 == status["model"]["sha256"]  # what runs is what was verified
    assert store.current() == "v1"
    staging = home / "models" / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []
    assert not list((home / "models").glob(".current.*"))
    for version in models.versions:
        assert store.verify(version.version).sha256 == version.manifest.sha256
    agent.stop()
    return models


@pytest.mark.parametrize("point", PUSH_POINTS)
def test_sigkill_during_a_push(point, template, start_agent, inproc_agent, tmp_path):
    template_home, v2 = template
    home = fresh_home(template_home, tmp_path, with_v2=False)
    data = v2.read_bytes()
    crash(
        start_agent,
        home,
        point,
        lambda c: c.put("/v1/models/v2", content=data, headers={"X-Model-Sha256": sm.sha256(v2)}),
    )
    models = check_restart(inproc_agent, home)
    row = next(h for h in models.history if h.action == "upload" and h.version == "v2")
    if point == "after_rename":  # the commit happened: v2 is in the store, whole
        assert [v.version for v in models.versions] == ["v2", "v1"]
        assert (row.outcome, row.reason) == ("stored", "stored just before the agent stopped")
    else:
        assert [v.version for v in models.versions] == ["v1"]
        assert row.outcome == "interrupted"
        assert row.reason == "the agent stopped during the upload; the partial file was removed"


@pytest.mark.parametrize("point", ACTIVATE_POINTS)
def test_sigkill_during_an_activation(point, template, start_agent, inproc_agent, tmp_path):
    home = fresh_home(template[0], tmp_path, with_v2=True)
    crash(start_agent, home, point, lambda c: c.post("/v1/models/v2/activate"))
    models = check_restart(inproc_agent, home)
    row = next(h for h in models.history if h.action == "activate" and h.version == "v2")
    assert row.outcome == "interrupted"
    if point in ("after_symlink", "in_probation"):  # v2 had become current, never proven
        assert (
            row.reason == "the agent stopped before v2 was proven; the next start went back to last good v1"
        )
        start = models.history[0]
        assert (start.action, start.version, start.previous, start.outcome) == ("startup", "v1", "v2", "good")
    else:
        assert row.reason == "the agent stopped before v2 became current; v1 kept serving"
    first = next(h for h in models.history if h.action == "activate" and h.version == "v1")
    assert (first.outcome, first.reason) == ("good", "loaded and warmed up at start")
