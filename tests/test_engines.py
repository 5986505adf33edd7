"""Engine builds without HTTP: real ONNX Runtime quantisation of the demo model, the store, stale checks.

One INT8 build of the demo model (8 calibration frames) is shared by the module; tests that change an
engine work on a copy of its store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from agent.bench.frames import scene_frames
from agent.bench.runner import model_for_precision
from agent.core.errors import ModelError
from agent.core.jobs import JobCancelled
from agent.engines.build import BuildOptions, BuildSource, CannotBuild, check_buildable, rebuild
from agent.engines.fingerprint import read_fingerprint
from agent.engines.store import EngineStore, engine_key, identities, identity
from agent.frames.metrics import AgentMetrics
from agent.inference.detector import Detector, demo_model_path, file_sha256

DEMO_SHA = file_sha256(demo_model_path())


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return scene_frames(16)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, frames):
    """(store root, result) of one INT8 build of the demo model."""
    root = tmp_path_factory.mktemp("engines") / "engines"
    stages: list[tuple[float, str]] = []
    result = rebuild(
        EngineStore(root),
        BuildSource(demo_model_path(), DEMO_SHA),
        BuildOptions(precision="int8", calibration=frames[:8], held_out=frames[8:]),
        progress=lambda f, s: stages.append((f, s)),
    )
    return root, result, stages


def _copy_store(root: Path, tmp_path: Path) -> EngineStore:
    shutil.copytree(root, tmp_path / "engines")
    return EngineStore(tmp_path / "engines")


def test_int8_build_quantises_the_demo_model_and_the_engine_loads(built, frames):
    root, result, stages = built
    key = engine_key("onnxruntime", "int8", DEMO_SHA)
    assert result.engine.key == key
    engine = root / key / "model.onnx"
    assert engine.is_file() and result.size == engine.stat().st_size
    assert result.size < result.source_size == demo_model_path().stat().st_size
    # really INT8: the ORT-optimised graph carries quantised convolutions or Q/DQ pairs
    ops = {n.op_type for n in onnx.load(str(engine)).graph.node}
    assert ops & {"QLinearConv", "QuantizeLinear", "DequantizeLinear"}, ops
    with Detector.load(engine) as detector:
        assert detector.input_shape == (1, 3, 256, 256)
        assert detector.detect(frames[9]).boxes.shape[1] == 4
    assert result.calibration_frames == 8 and result.agreement_frames == 8
    assert 0.0 < result.agreement_f1 <= 1.0
    assert result.p50_ms > 0 and result.fp32_p50_ms > 0
    assert result.speedup == pytest.approx(result.fp32_p50_ms / result.p50_ms, rel=1e-2)
    assert any("calibrating on 8 frames" in s for _, s in stages)
    assert [f for f, _ in stages] == sorted(f for f, _ in stages)  # progress only moves forward
    assert any("INT8 QDQ per-channel" in line for line in result.log)


def test_fingerprint_and_meta_are_written_beside_the_engine(built):
    root, result, _ = built
    folder = root / result.engine.key
    assert sorted(p.name for p in folder.iterdir()) == ["engine.json", "fingerprint.json", "model.onnx"]
    fp = read_fingerprint(folder / "model.onnx")
    here = identity("onnxruntime")
    assert fp is not None and fp.runtime == "onnxruntime" and fp.precision == "int8"
    assert fp.source_sha256 == DEMO_SHA and fp.input_shape == [1, 3, 256, 256]
    assert fp.runtime_version == here.runtime_version and fp.compute == here.compute
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["agreement_f1"] == result.agreement_f1 and meta["p50_ms"] == result.p50_ms
    assert not (root / ".staging").exists() or not any((root / ".staging").iterdir())


def test_list_and_find_report_a_fresh_engine(built):
    root, result, _ = built
    store = EngineStore(root)
    (info,) = store.list(identities())
    assert info.key == result.engine.key and not info.stale and info.stale_reason is None
    assert info.agreement_f1 == result.agreement_f1
    assert store.find(DEMO_SHA, "onnxruntime", "int8", identity("onnxruntime")).key == info.key
    assert store.find(DEMO_SHA, "onnxruntime", "fp32") is None
    assert store.find("0" * 64, "onnxruntime", "int8") is None


def test_an_engine_from_another_runtime_version_is_listed_stale_with_the_reason(built, tmp_path):
    root, result, _ = built
    store = _copy_store(root, tmp_path)
    fp_file = store.root / result.engine.key / "fingerprint.json"
    data = json.loads(fp_file.read_text())
    data["runtime_version"] = "1.2.0"
    fp_file.write_text(json.dumps(data))
    (info,) = store.list(identities())
    here = identity("onnxruntime")
    minor = ".".join(here.runtime_version.split(".")[:2])
    assert info.stale
    assert info.stale_reason == (
        f"built with ONNX Runtime 1.2 for {here.device} {here.compute}; this device has {minor}: rebuild it"
    )
    metrics = AgentMetrics()
    metrics.set_engines((e.key, e.fingerprint.runtime, e.stale) for e in [info])
    value = metrics.registry.get_sample_value(
        "fieldtui_agent_engine_stale", {"key": info.key, "runtime": "onnxruntime"}
    )
    assert value == 1.0
    metrics.set_engines([])  # the engine is gone: its series goes too
    assert (
        metrics.registry.get_sample_value(
            "fieldtui_agent_engine_stale", {"key": info.key, "runtime": "onnxruntime"}
        )
        is None
    )
    # and benchmarks refuse it with the rebuild command instead of loading it
    from agent.inference.backends import get_backend

    path, why = model_for_precision(get_backend("onnxruntime"), demo_model_path(), "int8", store)
    assert path is None and "is stale" in why and "engines rebuild" in why


def test_benchmarks_run_int8_from_the_engine_store(built, tmp_path):
    from agent.inference.backends import get_backend

    root, result, _ = built
    ort = get_backend("onnxruntime")
    path, why = model_for_precision(ort, demo_model_path(), "int8", EngineStore(root))
    assert why is None and path == root / result.engine.key / "model.onnx"
    path, why = model_for_precision(ort, demo_model_path(), "int8", EngineStore(tmp_path / "none"))
    assert path is None and "fieldtui-agent engines rebuild --precision int8" in why


def test_cancel_during_calibration_leaves_nothing_behind(tmp_path, frames):
    store = EngineStore(tmp_path / "engines")
    calls = {"n": 0}

    def check() -> None:
        calls["n"] += 1
        if calls["n"] > 6:  # a few calibration batches in
            raise JobCancelled()

    stages: list[str] = []
    with pytest.raises(JobCancelled):
        rebuild(
            store,
            BuildSource(demo_model_path(), DEMO_SHA),
            BuildOptions(calibration=frames[:8], held_out=frames[8:10]),
            check_cancelled=check,
            progress=lambda f, s: stages.append(s),
        )
    assert any("calibrating" in s for s in stages)
    assert store.list() == []
    assert not any(p for p in store.root.iterdir() if p.name != ".staging")
    assert not any((store.root / ".staging").iterdir())


def test_fp32_build_is_the_graph_optimised_model_and_agrees(tmp_path, frames):
    store = EngineStore(tmp_path / "engines")
    result = rebuild(
        store,
        BuildSource(demo_model_path(), DEMO_SHA),
        BuildOptions(precision="fp32", held_out=frames[:4]),
    )
    assert result.engine.key == engine_key("onnxruntime", "fp32", DEMO_SHA)
    assert result.calibration_frames == 0
    assert result.agreement_f1 == pytest.approx(1.0, abs=0.02)


def test_an_already_quantised_model_is_refused_and_nothing_is_stored(built, tmp_path, frames):
    root, result, _ = built
    store = EngineStore(tmp_path / "engines")
    int8 = root / result.engine.key / "model.onnx"
    with pytest.raises(ModelError, match="already quantised"):
        rebuild(store, BuildSource(int8, file_sha256(int8)), BuildOptions(calibration=frames[:2]))
    assert store.list() == [] and not any((store.root / ".staging").iterdir())


def test_requests_this_device_cannot_build_are_refused_with_why():
    with pytest.raises(CannotBuild, match="unknown backend 'tflite'"):
        check_buildable("tflite", "int8")
    with pytest.raises(CannotBuild, match="compiled off-device with Hailo's Dataflow Compiler"):
        check_buildable("hailo", "int8")
    with pytest.raises(CannotBuild, match="fp16 on onnxruntime"):
        check_buildable("onnxruntime", "fp16")
    assert check_buildable("onnxruntime", "int8").can_build


def test_a_damaged_fingerprint_hides_the_engine_instead_of_failing_the_list(built, tmp_path):
    root, result, _ = built
    store = _copy_store(root, tmp_path)
    (store.root / result.engine.key / "fingerprint.json").write_text("{not json")
    assert store.list(identities()) == []


@pytest.fixture
def fake_trt(monkeypatch):
    """The FAKE tensorrt and cuda modules of tests/fakes (TensorRT cannot be installed here)."""
    from tests.sdk_fakes import fake_sdks

    with fake_sdks(monkeypatch):
        yield


def test_a_tensorrt_int8_rebuild_hands_the_qdq_model_to_build_engine(fake_trt, tmp_path, frames, monkeypatch):
    from agent.inference.backends import get_backend

    trt_cls = get_backend("tensorrt")
    original = trt_cls.build_engine.__func__
    handed: list[set[str]] = []

    def spy(cls, onnx_path, out_path, **kwargs):
        handed.append({n.op_type for n in onnx.load(str(onnx_path)).graph.node})
        return original(cls, onnx_path, out_path, **kwargs)

    monkeypatch.setattr(trt_cls, "build_engine", classmethod(spy))
    store = EngineStore(tmp_path / "engines")
    result = rebuild(
        store,
        BuildSource(demo_model_path(), DEMO_SHA),
        BuildOptions(backend="tensorrt", precision="int8", calibration=frames[:4], held_out=frames[4:8]),
    )
    assert handed and {"QuantizeLinear", "DequantizeLinear"} <= handed[0]  # explicit quantisation
    assert (
        result.engine.key == engine_key("tensorrt", "int8", DEMO_SHA) and result.engine.file == "model.engine"
    )
    fp = read_fingerprint(store.path(result.engine.key))
    assert fp.runtime == "tensorrt" and fp.precision == "int8" and fp.source_sha256 == DEMO_SHA
    (info,) = store.list(identities())
    assert not info.stale
    assert not (tmp_path / "engines" / result.engine.key / "work").exists()
