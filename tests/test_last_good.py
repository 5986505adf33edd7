"""Last good as the store's reference: what every candidate is judged against, where every rollback
goes, what pruning keeps, and the verdicts that make a known-bad model a deliberate choice.

The API half runs a real agent on 127.0.0.1 (in-process uvicorn, real onnxruntime, demo: source); the
store half drives the store code directly with history rows, as the agent writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import Conflict
from agent.core.state import StateDB
from agent.store.activation import ModelManager
from agent.store.history import ModelHistory
from agent.store.models import ModelStore
from agent.store.reconcile import reconcile
from agent.store.settings import ModelSettings
from tests import storemodels as sm
from tests.storeclient import ModelEvents, activate, listing, upload, wait_for
from tests.test_model_store import put

SOURCE = "demo:?fps=20&size=320x240"


@pytest.fixture
def store_agent(inproc_agent, tmp_path):
    def start(**settings):
        home = tmp_path / "store-home"
        home.mkdir(mode=0o700)
        table = {"probation_min_frames": 5, **settings}
        (home / "config.toml").write_text("[models]\n" + "".join(f"{k} = {v}\n" for k, v in table.items()))
        return inproc_agent(home, source=SOURCE)

    return start


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return sm.make(tmp_path / "files", "v1", "v2", "weak", "slow")


def test_a_candidate_activated_during_another_probation_is_judged_against_last_good(store_agent, files):
    """The issue's first visit: v2 on probation, a weak model activated on top of it. The weak one is
    judged against v1 (which passed), v2 is recorded as superseded, and the rollback goes to v1."""
    agent = store_agent(probation_s=2)
    with agent.client() as c, ModelEvents(agent) as events:
        for name in ("v1", "v2", "weak"):
            assert upload(c, files[name], name).status_code == 201
        assert listing(c).rollback is None  # the configured model serves, nothing passed: no rollback
        assert c.post("/v1/models/rollback").status_code == 409
        assert activate(c, "v1").state == "succeeded"
        wait_for(lambda: listing(c).history[0].outcome == "good", 20)
        plan = listing(c).rollback
        assert plan.version is None and plan.label == "the configured model"
        assert activate(c, "v2").state == "succeeded"
        weak = activate(c, "weak")
        assert weak.state == "succeeded" and weak.result["outcome"] == "probation", weak.error
        assert weak.result["details"]["baseline"]["of"] == "v1"
        probation = listing(c).probation
        assert (probation.version, probation.last_good) == ("weak", "v1")
        assert probation.baseline_confidence > 0.8  # v1's figures, not weak's or v2's
        back = events.wait(lambda e: e.get("change") == "auto_rolled_back", 30)
        assert (back["version"], back["previous"]) == ("v1", "weak")  # last good, not the superseded v2
        assert back["summary"].startswith("auto-rollback from weak to v1: confidence 0.27 vs 0.9")
        assert back["summary"].endswith(" s") and "for v1 over " in back["summary"]
        models = wait_for(lambda: (m := listing(c)).serving.version == "v1" and m)
        verdicts = {v.version: (v.verdict, v.verdict_reason) for v in models.versions}
        assert verdicts["v1"] == ("passed", None)
        assert (
            verdicts["v2"][0] == "superseded"
            and "weak was activated during its probation" in verdicts["v2"][1]
        )
        assert verdicts["weak"][0] == "rolled_back" and "weak averages 0.27" in verdicts["weak"][1]
        auto = models.history[0]
        assert auto.action == "auto_rollback" and auto.reason == back["summary"]  # the history says why too
        # the known-bad model again: refused naming why, unless forced
        r = c.post("/v1/models/weak/activate")
        assert r.status_code == 409
        assert (
            "weak rolled back before: confidence collapsed" in r.json()["detail"]
            and "--force" in r.json()["detail"]
        )
        # its bytes under a new name: refused the same way, unless forced
        r = upload(c, files["weak"], "weak2")
        assert r.status_code == 409 and "same sha256" in r.json()["detail"]
        assert "as weak, which rolled back: confidence collapsed" in r.json()["detail"]
        assert [v.version for v in listing(c).versions if v.version == "weak2"] == []
        forced = c.put(
            "/v1/models/weak2?force=true",
            content=files["weak"].read_bytes(),
            headers={"X-Model-Sha256": sm.sha256(files["weak"])},
        )
        assert forced.status_code == 201, forced.text
        assert c.post("/v1/models/weak/activate?force=true").status_code == 202


def test_the_speed_gate_compares_with_last_good_not_with_a_model_on_probation(store_agent, files):
    agent = store_agent(probation_s=60)
    with agent.client() as c:
        for name in ("v1", "slow"):
            assert upload(c, files[name], name).status_code == 201
        assert activate(c, "v1").state == "succeeded"  # on probation for the whole test: never last good
        slow = activate(c, "slow", timeout=120)
        assert slow.state == "failed" and "slow is too slow" in slow.error
        assert "for the configured model (limit" in slow.error and "v1 keeps serving" in slow.error
        models = listing(c)
        assert models.probation.version == "v1" and models.serving.version == "v1"  # undisturbed


# --- the store without HTTP -----------------------------------------------------------------------


@pytest.fixture
def manager(tmp_path: Path, tiny_model: Path):
    db = StateDB(tmp_path / "state.db")
    store = ModelStore(tmp_path / "models", ModelSettings(keep=3))
    yield ModelManager(store, ModelHistory(db), config_model=str(tiny_model))
    db.close()


def test_pruning_removes_failed_and_rolled_back_versions_first_and_keeps_last_good(manager, tmp_path):
    for i in range(1, 6):
        put(manager, sm.detector(tmp_path / f"p{i}.onnx", seed=10 + i), f"p{i}")
    h = manager.history
    h.add("activate", "p1", "good")
    h.add("activate", "p2", "failed", previous="p1", reason="p2 gives NaN values")
    h.add("activate", "p3", "rolled_back", previous="p1", reason="confidence collapsed")
    h.add("activate", "p4", "superseded", previous="p1", reason="superseded: p5 was activated")
    h.add("activate", "p5", "probation", previous="p4")
    manager.store.set_current("p5")
    assert manager.last_good() == "p1"
    removed = manager.prune()
    assert removed == ["p2", "p3"]  # not the oldest (p1, last good)
    assert sorted(m.version for m in manager.store.versions()) == ["p1", "p4", "p5"]
    reasons = [r.reason for r in h.recent(2)]
    assert reasons == [
        "pruned (rolled back: confidence collapsed): more than 3 versions kept",
        "pruned (failed: p2 gives NaN values): more than 3 versions kept",
    ]


def test_bytes_that_failed_under_another_name_are_refused_unless_forced(manager, tmp_path):
    path = sm.detector(tmp_path / "junk.onnx", seed=7)
    put(manager, path, "junk1")
    manager.history.add("activate", "junk1", "failed", reason="junk1 gives NaN values on live frames")
    manager.remove("junk1")  # gone from the disk, still remembered
    with pytest.raises(Conflict) as err:
        put(manager, path, "junk2")
    assert "same sha256" in str(err.value) and "junk1 gives NaN values on live frames" in str(err.value)
    assert not manager.store.has("junk2")
    upload = manager.begin_upload(
        "junk2", sm.sha256(path), size=path.stat().st_size, fmt="onnx", source="t", force=True
    )
    upload.write(path.read_bytes())
    upload.finish()
    assert manager.store.has("junk2")
    assert manager.history.recent(1)[0].details["forced"] == "same bytes as junk1, which failed"


def test_activating_a_failed_version_offline_needs_force(manager, tmp_path):
    put(manager, sm.detector(tmp_path / "a.onnx", seed=3), "a")
    manager.history.add("activate", "a", "failed", reason="a is too slow")
    with pytest.raises(Conflict, match="a failed before: a is too slow; activate it with --force"):
        manager.activate_offline("a")
    assert manager.store.current() is None
    assert manager.activate_offline("a", force=True)["outcome"] == "pending"


def test_a_crash_during_a_superseding_probation_goes_back_to_last_good(manager, tmp_path):
    for name, seed in (("v1", 1), ("v2", 2), ("v3", 3)):
        put(manager, sm.detector(tmp_path / f"{name}.onnx", seed=seed), name)
    manager.history.add("activate", "v1", "good")
    manager.history.add("activate", "v2", "superseded", previous="v1")
    row = manager.history.add("activate", "v3", "probation", previous="v2")
    manager.store.set_current("v3")
    detector = reconcile(manager)
    detector.close()
    assert manager.serving == "v1" and manager.store.current() == "v1"  # not v2, never proven
    assert "back to last good v1" in manager.history.get(row).reason
    assert manager.rollback_plan("v1").version is None
