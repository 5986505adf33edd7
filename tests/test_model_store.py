"""The model store without HTTP: names, staged uploads, verification, the current link, pruning, settings,
and what the agent serves at start after every kind of interrupted push or activation (reconcile)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from agent.core.config import ConfigError
from agent.core.errors import AgentError, Conflict, ModelError, NotFound
from agent.core.state import StateDB
from agent.store.activation import ModelManager
from agent.store.history import ModelHistory
from agent.store.models import ModelStore, StoreLock, UploadTooLarge, VersionNameError, check_version
from agent.store.reconcile import reconcile
from agent.store.settings import MB, ModelSettings
from agent.store.upload import Upload, sniff_onnx
from tests import storemodels as sm


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    return sm.make(tmp_path / "files", "v1", "v2", "v3")


@pytest.fixture
def manager(tmp_path: Path, tiny_model: Path):
    db = StateDB(tmp_path / "state.db")
    store = ModelStore(tmp_path / "models", ModelSettings(keep=3))
    yield ModelManager(store, ModelHistory(db), config_model=str(tiny_model))
    db.close()


def put(manager: ModelManager, path: Path, version: str, sha: str | None = None, cut: int | None = None):
    """An upload through the store's code, as the PUT route drives it (``cut``: stop after that many bytes)."""
    data = path.read_bytes()
    upload = manager.begin_upload(version, sha or sm.sha256(path), size=len(data), fmt="onnx", source="test")
    if not hasattr(upload, "write"):
        return upload, False
    upload.write(data[:cut] if cut is not None else data)
    return upload.finish()


def leftovers(store: ModelStore) -> list[str]:
    staged = list(store.staging.iterdir()) if store.staging.exists() else []
    return [p.name for p in staged] + [p.name for p in store.root.glob(".current.*")]


@pytest.mark.parametrize("name", ["v1", "2024.06.1", "yolo11n-int8+hailo", "A" * 64, "a_b"])
def test_good_version_names(name):
    assert check_version(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a/b", "path separator"),
        ("..", "'..'"),
        ("v1..2", "'..'"),
        ("a\x00b", "NUL"),
        ("v" * 65, "65 characters"),
        ("", "empty"),
        (".hidden", "not allowed"),
        ("current", "reserved"),
        ("rollback", "reserved"),
        ("sp ace", "not allowed"),
    ],
)
def test_bad_version_names_say_why(name, why):
    with pytest.raises(VersionNameError) as err:
        check_version(name)
    assert why in str(err.value) and err.value.status == 422 and "\x00" not in str(err.value)


def test_an_upload_is_stored_complete_with_its_manifest_and_nothing_staged(manager, models):
    manifest, created = put(manager, models["v1"], "v1")
    assert created
    assert manifest.sha256 == sm.sha256(models["v1"]) and manifest.size == models["v1"].stat().st_size
    assert manifest.layout == "yolov8" and manifest.input_shape == [1, 3, 128, 128]
    assert manifest.names == sm.CLASSES and manifest.outputs[0].shape == [1, 8, 336]
    folder = manager.store.root / "v1"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx"]
    assert (folder / "model.onnx").read_bytes() == models["v1"].read_bytes()
    assert leftovers(manager.store) == []
    assert manager.store.verify("v1") == manifest
    [row] = manager.history.recent()
    assert (row.action, row.version, row.outcome) == ("upload", "v1", "stored")


def test_same_bytes_again_are_idempotent_other_bytes_are_a_conflict(manager, models):
    put(manager, models["v1"], "v1")
    again, created = put(manager, models["v1"], "v1")
    assert not created and again.version == "v1"
    with pytest.raises(Conflict) as err:
        put(manager, models["v2"], "v1")
    assert "already on the device with other bytes" in str(err.value)
    assert manager.store.verify("v1").sha256 == sm.sha256(models["v1"])


def test_wrong_sha256_names_both_hashes_and_leaves_no_trace(manager, models):
    claimed = "ab" * 32
    with pytest.raises(AgentError) as err:
        put(manager, models["v1"], "v1", sha=claimed)
    assert err.value.status == 422
    assert claimed in str(err.value) and sm.sha256(models["v1"]) in str(err.value)
    assert not manager.store.has("v1") and leftovers(manager.store) == []
    assert manager.history.recent()[0].outcome == "refused"


def test_a_short_upload_stores_nothing(manager, models):
    with pytest.raises(AgentError) as err:
        put(manager, models["v1"], "v1", cut=1000)
    assert "ended after 1000 of" in str(err.value)
    assert manager.store.versions() == [] and leftovers(manager.store) == []


def test_oversize_is_refused_before_reading_and_while_reading(tmp_path, models):
    store = ModelStore(tmp_path / "models", ModelSettings(max_upload_bytes=MB))
    with pytest.raises(UploadTooLarge) as err:
        store.check_new("v1", "0" * 64, 2 * MB)
    assert err.value.status == 413 and "nothing was read" in str(err.value)
    upload = Upload(store, "v1", "0" * 64, size=None, fmt="onnx", source="test")  # no size announced
    with pytest.raises(UploadTooLarge):
        upload.write(b"\0" * (MB + 1))
    assert leftovers(store) == [] and store.versions() == []


def test_files_that_are_not_detectors_are_refused_saying_why(manager, tmp_path):
    cases = {
        "notes.onnx": (b"this is a README, not a model\n", "plain text"),
        "page.onnx": (b"<!DOCTYPE html><html>", "HTML"),
        "ckpt.onnx": (b"PK\x03\x04" + b"\0" * 64, "zip archive"),
        "junk.onnx": (bytes(range(256)) * 4, "does not start like an ONNX protobuf"),
    }
    for name, (data, why) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ModelError) as err:
            put(manager, path, "bad")
        assert "bad is not an ONNX model" in str(err.value) and why in str(err.value)
    with pytest.raises(ModelError) as err:
        put(manager, sm.classifier(tmp_path / "cls.onnx"), "cls")
    assert "cls is not a usable detector" in str(err.value)
    assert manager.store.versions() == [] and leftovers(manager.store) == []


def test_onnx_sniff_accepts_what_exporters_write(models):
    assert sniff_onnx(models["v1"].read_bytes()[:64]) is None


def test_damage_on_disk_is_found_by_verify(manager, models):
    put(manager, models["v1"], "v1")
    path = manager.store.root / "v1" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as err:
        manager.store.verify("v1")
    assert "v1 is damaged on disk" in str(err.value)


def test_current_is_one_relative_symlink_replaced_by_rename(manager, models):
    put(manager, models["v1"], "v1")
    put(manager, models["v2"], "v2")
    store = manager.store
    store.set_current("v1")
    store.set_current("v2")
    assert os.readlink(store.current_link) == "v2" and store.current() == "v2"
    assert leftovers(store) == []
    with pytest.raises(NotFound):
        store.set_current("v9")
    assert store.current() == "v2"
    store.set_current(None)
    assert store.current() is None and not store.current_link.is_symlink()


def test_pruning_keeps_n_and_never_what_is_protected(manager, models, tmp_path):
    for i in range(1, 6):
        put(manager, sm.detector(tmp_path / f"p{i}.onnx", seed=10 + i), f"p{i}")
    manager.store.set_current("p1")  # the oldest, but current: kept
    removed = manager.prune()
    assert removed == ["p2", "p3"]
    assert sorted(m.version for m in manager.store.versions()) == ["p1", "p4", "p5"]
    assert [r.reason for r in manager.history.recent(2)] == ["pruned: more than 3 versions kept"] * 2


def test_remove_refuses_the_current_version(manager, models):
    put(manager, models["v1"], "v1")
    put(manager, models["v2"], "v2")
    manager.store.set_current("v1")
    with pytest.raises(Conflict, match="the model the agent starts with"):
        manager.remove("v1")
    listing = manager.remove("v2")
    assert [v.version for v in listing.versions] == ["v1"]
    with pytest.raises(NotFound):
        manager.remove("v2")


def test_the_store_lock_is_exclusive(tmp_path):
    first, second = StoreLock(tmp_path / ".lock"), StoreLock(tmp_path / ".lock")
    assert first.acquire()
    assert not second.acquire(0.1)
    first.release()
    assert second.acquire()
    second.release()


def test_settings_from_config_and_their_errors():
    s = ModelSettings.from_section(
        {"keep": 2, "max_upload_mb": 10, "probation_s": 0, "registry": "http://x:1/"}
    )
    assert (s.keep, s.max_upload_bytes, s.probation_s, s.registry) == (2, 10 * MB, 0.0, "http://x:1")
    for bad, words in [
        ({"keep": 0}, "keep = 0 is out of range"),
        ({"keep": 1.5}, "must be a whole number"),
        ({"latency_factor": "3"}, "must be a number"),
        ({"registry": "ftp://x"}, "http:// or https:// URL"),
        ({"probation": 5}, "unknown setting 'probation'"),
    ]:
        with pytest.raises(ConfigError, match=words):
            ModelSettings.from_section(bad)


# --- reconcile: what the agent starts with ------------------------------------------------------------


def serving_after_start(manager: ModelManager) -> tuple[str | None, str]:
    detector = reconcile(manager)
    try:
        return manager.serving, detector.info.version or Path(detector.info.path).name
    finally:
        detector.close()


def test_start_serves_a_valid_current_and_removes_staging_leftovers(manager, models):
    put(manager, models["v1"], "v1")
    manager.store.set_current("v1")
    junk = manager.store.staging / "v9.abc.part"
    junk.mkdir(parents=True)
    (junk / "model.onnx").write_bytes(b"half")
    (manager.store.root / ".current.dead.tmp").symlink_to("v1")
    assert serving_after_start(manager) == ("v1", "v1")
    assert leftovers(manager.store) == []


def test_start_without_a_store_serves_the_configured_model(manager, tiny_model):
    assert serving_after_start(manager) == (None, tiny_model.name)
    assert manager.history.recent() == []


def test_start_skips_a_damaged_current_for_the_last_good_version(manager, models):
    put(manager, models["v1"], "v1")
    put(manager, models["v2"], "v2")
    manager.history.add("activate", "v1", "good")
    manager.history.add("activate", "v2", "good", previous="v1")
    manager.store.set_current("v2")
    (manager.store.root / "v2" / "model.onnx").write_bytes(b"\x08\x07 truncated")
    assert serving_after_start(manager) == ("v1", "v1")
    assert manager.store.current() == "v1"
    latest, failed = manager.history.recent(2)
    assert (failed.version, failed.outcome) == ("v2", "failed") and "damaged on disk" in failed.reason
    assert (latest.action, latest.version, latest.outcome) == ("startup", "v1", "good")
    assert "last good version v1" in latest.reason


def test_start_after_a_crash_in_probation_goes_back_to_the_previous_model(manager, models):
    put(manager, models["v1"], "v1")
    put(manager, models["v2"], "v2")
    manager.history.add("activate", "v1", "good")
    row = manager.history.add("activate", "v2", "probation", previous="v1")
    manager.store.set_current("v2")
    assert serving_after_start(manager) == ("v1", "v1")
    entry = manager.history.get(row)
    assert entry.outcome == "interrupted" and "before v2 was proven" in entry.reason
    assert manager.store.current() == "v1"


def test_start_after_a_crash_before_the_switch_keeps_the_current_model(manager, models):
    put(manager, models["v1"], "v1")
    put(manager, models["v2"], "v2")
    manager.history.add("activate", "v1", "good")
    manager.store.set_current("v1")
    row = manager.history.add("activate", "v2", "started", previous="v1")
    upload = manager.history.add("upload", "v3", "started", details={"sha256": "0" * 64})
    assert serving_after_start(manager) == ("v1", "v1")
    assert manager.history.get(row).outcome == "interrupted"
    assert manager.history.get(row).reason == "the agent stopped before v2 became current; v1 kept serving"
    assert manager.history.get(upload).outcome == "interrupted"


def test_an_activation_made_with_the_agent_stopped_is_loaded_at_start(manager, models):
    put(manager, models["v1"], "v1")
    result = manager.activate_offline("v1")
    assert result["outcome"] == "pending" and manager.store.current() == "v1"
    assert serving_after_start(manager) == ("v1", "v1")
    assert manager.history.get(result["id"]).outcome == "good"
    # and a rollback with the agent stopped goes back to the configured model
    back = manager.rollback_offline()
    assert back["version"] is None and manager.store.current() is None
    assert manager.history.get(result["id"]).outcome == "rolled_back"


def test_a_broken_current_link_is_replaced(manager, models, tiny_model):
    manager.store.current_link.symlink_to("gone")
    assert serving_after_start(manager) == (None, tiny_model.name)
    assert not manager.store.current_link.is_symlink()


def test_history_survives_in_state_db(tmp_path, manager, models):
    put(manager, models["v1"], "v1")
    conn = sqlite3.connect(manager.history.db.path)
    rows = conn.execute("SELECT action, version, outcome FROM model_history").fetchall()
    conn.close()
    assert rows == [("upload", "v1", "stored")]
