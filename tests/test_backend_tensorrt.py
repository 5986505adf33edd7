"""TensorRT backend: engine builds (FP32, FP16, INT8 from QDQ), timing cache, progress, cancellation,
the stale-engine checks, and detections through the real data path.

TensorRT and CUDA cannot be installed here: these tests run our code against the FAKE ``tensorrt`` and
``cuda`` modules in tests/fakes (put on the path per test), whose engines run the ONNX model with ONNX
Runtime on the fake device memory. What they prove is that our builder and runtime code drive the
documented API correctly; nothing here has run on a GPU.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import AgentError, BackendUnavailable, ModelError
from agent.core.jobs import JobCancelled
from agent.engines.fingerprint import FINGERPRINT, StaleEngine, write_fingerprint
from agent.frames.sources.demo import DemoScene
from agent.inference.agreement import f1_score
from agent.inference.backends import BACKENDS, get_backend
from agent.inference.backends.sidecar import METADATA
from agent.inference.backends.tensorrt import TensorRtBackend
from agent.inference.detector import Detector, demo_model_path, file_sha256
from agent.store.upload import inspect_model
from tests.sdk_fakes import fake_sdks

SHAPE = (1, 3, 256, 256)


@pytest.fixture
def trt(monkeypatch):
    with fake_sdks(monkeypatch):
        yield importlib.import_module("tensorrt")


@pytest.fixture
def cuda(trt):
    return importlib.import_module("cuda.bindings.runtime")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    scene = DemoScene(seed=11)
    return [scene.render(0.7 * i + 0.3)[0] for i in range(6)]


@pytest.fixture(scope="module")
def reference(frames):
    with Detector.load(None) as det:
        yield [det.detect(f) for f in frames]


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory) -> Path:
    """The demo model statically quantised to QDQ (Conv only, symmetric INT8, per channel), calibrated
    on a few demo frames: the form TensorRT builds INT8 engines from."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    with Detector.load(None) as det:
        scene = DemoScene(seed=3)
        feeds = [{"images": det.preprocess(scene.render(0.5 * i)[0])[0]} for i in range(8)]

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    out = tmp_path_factory.mktemp("qdq") / "demo-qdq.onnx"
    quantize_static(
        str(demo_model_path()),
        str(out),
        Frames(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
        extra_options={"ActivationSymmetric": True},
    )
    return out


class Build:
    """One build's engine path, fingerprint, progress reports and log lines."""

    def __init__(self, tmp_path: Path, precision: str, *, source: Path | None = None, **options) -> None:
        self.dir = tmp_path / f"engine-{precision}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "model.engine"
        self.progress: list[tuple[float, str]] = []
        self.log: list[str] = []
        source = source or demo_model_path()
        options.setdefault("check_cancelled", lambda: None)
        self.fingerprint = TensorRtBackend.build_engine(
            source,
            self.path,
            precision=precision,
            input_shape=SHAPE,
            source_sha256=file_sha256(source),
            progress=lambda f, s: self.progress.append((f, s)),
            log=self.log.append,
            **options,
        )
        write_fingerprint(self.path, self.fingerprint)


def test_registered_and_unavailable_without_tensorrt(tmp_path):
    assert get_backend("tensorrt") is TensorRtBackend is BACKENDS["tensorrt"]
    ok, reason = TensorRtBackend.available()
    assert not ok and reason.startswith("tensorrt not importable") and "python3-libnvinfer" in reason
    here = TensorRtBackend.identity()
    assert not here.available and not here.can_build and here.runtime_version is None
    with pytest.raises(BackendUnavailable, match="tensorrt not importable"):
        TensorRtBackend.build_engine(
            demo_model_path(), tmp_path / "m.engine", precision="fp16", input_shape=SHAPE,
            source_sha256="0" * 64, progress=lambda *a: None, check_cancelled=lambda: None, log=print,
        )  # fmt: skip
    # A .engine pushed to a device without TensorRT: one line saying so, and what to push instead.
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not checked: the runtime is missing")
    with pytest.raises(
        ModelError, match=r"v1 is a \.engine model, which this device cannot load \(tensorrt not"
    ):
        inspect_model(engine, "engine", version="v1")


def test_identity_reports_gpu_and_no_device(trt, cuda, monkeypatch):
    here = TensorRtBackend.identity()
    assert here.available and here.can_build
    assert (here.runtime_version, here.device, here.compute) == ("10.3.0.26", "Orin (fake)", "sm_87")
    assert TensorRtBackend.available() == (True, "TensorRT 10.3.0.26 on Orin (fake) (sm_87)")
    monkeypatch.setattr(cuda, "DEVICE_COUNT", 0)
    ok, reason = TensorRtBackend.available()
    assert not ok and "TensorRT 10.3.0.26 importable, but no usable CUDA device" in reason
    assert "no CUDA-capable device is detected" in reason


def test_fp32_and_fp16_engines_detect_like_onnxruntime(trt, tmp_path, frames, reference):
    for precision, flags in (("fp32", []), ("fp16", ["FP16"])):
        build = Build(tmp_path, precision, workspace_mb=64)
        assert trt.BUILDS[-1]["flags"] == flags and trt.BUILDS[-1]["workspace"] == 64 << 20
        fp = build.fingerprint
        assert (fp.runtime, fp.runtime_version, fp.device, fp.compute) == (
            "tensorrt",
            "10.3.0.26",
            "Orin (fake)",
            "sm_87",
        )
        assert fp.precision == precision and fp.input_shape == list(SHAPE)
        assert fp.source_sha256 == file_sha256(demo_model_path())
        assert sorted(p.name for p in build.dir.iterdir()) == [FINGERPRINT, METADATA, "model.engine"]
        with Detector.load(build.path, backend="tensorrt") as det:
            assert det.info.backend == "tensorrt" and det.info.format == "engine"
            # Names come from metadata.json: the plan itself carries no ONNX metadata.
            assert det.names == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
            assert det.layout == "yolov8" and det.input_shape == SHAPE
            found = [det.detect(f) for f in frames]
        assert sum(len(d) for d in reference) >= 6
        assert f1_score(zip(reference, found, strict=True)) >= (1.0 if precision == "fp32" else 0.95)
        if precision == "fp32":
            for ref, got in zip(reference, found, strict=True):
                np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-3)


def test_int8_engine_is_built_from_the_qdq_model(trt, tmp_path, qdq_model, frames, reference):
    build = Build(tmp_path, "int8", source=qdq_model)
    assert trt.BUILDS[-1]["flags"] == ["FP16", "INT8"]  # FP16 too: unquantised layers do not fall to FP32
    with Detector.load(qdq_model) as ort_int8, Detector.load(build.path, backend="tensorrt") as det:
        pairs = [(ort_int8.detect(f), det.detect(f)) for f in frames]
        vs_fp32 = f1_score(zip(reference, (d for _, d in pairs), strict=True))
    assert f1_score(pairs) == 1.0  # the engine runs the QDQ model as ONNX Runtime does
    assert vs_fp32 >= 0.8, vs_fp32  # and still sees what FP32 sees (0.9 measured on these frames)
    with pytest.raises(AgentError, match="no QuantizeLinear/DequantizeLinear nodes.*QDQ model") as err:
        Build(tmp_path / "plain", "int8")
    assert err.value.status == 422 and not (tmp_path / "plain" / "engine-int8" / "model.engine").exists()


def test_timing_cache_written_then_reused(trt, tmp_path):
    cache = tmp_path / "cache" / "timing.cache"
    first = Build(tmp_path / "a", "fp16", timing_cache=cache)
    assert cache.is_file() and cache.stat().st_size > 0
    assert trt.BUILDS[-1]["cache_hits"] == 0
    assert "timing cache timing.cache: new" in first.log
    assert any(re.fullmatch(r"timing cache timing\.cache: \d+ bytes saved", line) for line in first.log)
    second = Build(tmp_path / "b", "fp16", timing_cache=cache)
    assert trt.BUILDS[-1]["cache_hits"] == trt.BUILDS[-1]["layers"] > 0  # every layer's timing reused
    assert f"timing cache timing.cache: {len(cache.read_bytes())} bytes loaded" in second.log
    cache.write_bytes(b"garbage from another TensorRT")
    third = Build(tmp_path / "c", "fp16", timing_cache=cache)
    assert "timing cache timing.cache is not usable by this TensorRT; starting a new one" in third.log
    assert trt.BUILDS[-1]["cache_hits"] == 0 and third.path.is_file()


def test_progress_reports_stages_with_elapsed_time(trt, tmp_path):
    build = Build(tmp_path, "fp16")
    fractions = [f for f, _ in build.progress]
    stages = [s for _, s in build.progress]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert stages[0] == "parsing demo.onnx" and re.fullmatch(r"built in \d+ s", stages[-1])
    building = [s for s in stages if s.startswith("building: ")]
    assert {re.fullmatch(r"building: (.+) \d+/\d+ \(\d+ s\)", s).group(1) for s in building} == {
        "Graph optimization", "Tactic selection", "Engine serialization",
    }  # fmt: skip
    assert any(re.fullmatch(r"parsed demo\.onnx: \d+ layers, 1 input\(s\)", line) for line in build.log)


def test_cancel_mid_build_leaves_nothing(trt, tmp_path):
    calls = 0

    def check_cancelled() -> None:
        nonlocal calls
        calls += 1
        if calls > 20:  # well inside the tactic-selection phase
            raise JobCancelled()

    cache = tmp_path / "timing.cache"
    with pytest.raises(JobCancelled):
        Build(tmp_path, "fp16", check_cancelled=check_cancelled, timing_cache=cache)
    assert calls == 21
    assert list((tmp_path / "engine-fp16").iterdir()) == [] and not cache.exists()
    assert trt.BUILDS == []  # the fake builder stopped: no plan was produced


def test_parse_errors_and_fixed_shape_are_reported(trt, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07 truncated")
    with pytest.raises(
        ModelError, match=r"TensorRT cannot parse broken\.onnx \(In node -1 .*MODEL_DESERIALIZE_FAILED"
    ):
        Build(tmp_path, "fp32", source=broken)
    with pytest.raises(
        AgentError, match=r"fixed input shape \[1, 3, 256, 256\], not \[1, 3, 320, 320\]"
    ) as err:
        TensorRtBackend.build_engine(
            demo_model_path(), tmp_path / "m.engine", precision="fp32", input_shape=(1, 3, 320, 320),
            source_sha256="0" * 64, progress=lambda *a: None, check_cancelled=lambda: None, log=print,
        )  # fmt: skip
    assert err.value.status == 422
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "engine-fp32" / "model.engine").exists()


def test_stale_fingerprint_is_refused_before_deserialising(trt, cuda, tmp_path, monkeypatch):
    build = Build(tmp_path, "fp16")
    with Detector.load(build.path, backend="tensorrt"):
        pass
    calls = trt.DESERIALIZE_CALLS
    monkeypatch.setattr(trt, "__version__", "10.7.0.23")
    with pytest.raises(StaleEngine) as err:
        Detector.load(build.path, backend="tensorrt")
    assert str(err.value) == (
        "model.engine is stale: built with TensorRT 10.3.0.26 for Orin (fake) sm_87; this device has 10.7.0.23: "
        "rebuild it (--version-compatible keeps the next one loading after a TensorRT upgrade)"
    )
    assert err.value.status == 409 and calls == trt.DESERIALIZE_CALLS  # the plan was never handed over
    monkeypatch.setattr(trt, "__version__", "10.3.0.26")
    monkeypatch.setattr(cuda, "MAJOR", 7)
    monkeypatch.setattr(cuda, "MINOR", 2)
    with pytest.raises(
        StaleEngine, match="built with TensorRT 10.3.0.26 for Orin \\(fake\\) sm_87; this device has sm_72"
    ):
        Detector.load(build.path, backend="tensorrt")
    assert calls == trt.DESERIALIZE_CALLS


def test_plan_from_another_version_without_fingerprint(trt, cuda, tmp_path, monkeypatch):
    build = Build(tmp_path, "fp32")
    (build.dir / FINGERPRINT).unlink()  # a bare plan pushed by hand: only TensorRT can tell
    monkeypatch.setattr(trt, "__version__", "10.7.0.23")
    calls = trt.DESERIALIZE_CALLS
    with pytest.raises(ModelError) as err:
        Detector.load(build.path, backend="tensorrt")
    message = str(err.value)
    assert calls + 1 == trt.DESERIALIZE_CALLS
    assert message.startswith("model.engine cannot be loaded by TensorRT 10.7.0.23 on Orin (fake) (sm_87): ")
    assert "Version tag does not match" in message and "\n" not in message
    assert message.endswith("built for another TensorRT version or GPU (or is not a TensorRT engine); "
                            "rebuild it on this device (fieldtui-agent engines rebuild --backend tensorrt)")  # fmt: skip
    # Through the model store's check, the same line, as a 422 for the push.
    with pytest.raises(
        ModelError, match="v3 is not a usable detector: model.engine cannot be loaded by TensorRT"
    ):
        inspect_model(build.path, "engine", version="v3")


def test_infer_after_close_and_wrong_shape(trt, tmp_path):
    build = Build(tmp_path, "fp32")
    backend = TensorRtBackend(build.path)
    assert [(s.name, s.shape, str(s.dtype)) for s in backend.inputs] == [("images", SHAPE, "float32")]
    assert [(s.name, s.shape) for s in backend.outputs] == [("output0", (1, 8, 1024))]
    with pytest.raises(ModelError, match=r"takes \[1, 3, 256, 256\] inputs, got \[1, 3, 128, 128\]"):
        backend.infer(np.zeros((1, 3, 128, 128), np.float32))
    backend.close()
    backend.close()
    with pytest.raises(ModelError, match="was closed"):
        backend.infer(np.zeros(SHAPE, np.float32))


def test_model_for_precision_serves_the_built_precision(trt, tmp_path):
    build = Build(tmp_path, "fp16")
    assert TensorRtBackend.model_for_precision(build.path, "fp16") == (build.path, None)
    path, why = TensorRtBackend.model_for_precision(build.path, "int8")
    assert path is None and why == "model.engine is a fp16 engine; build a int8 one to measure it"
    path, why = TensorRtBackend.model_for_precision(demo_model_path(), "fp16")
    assert path is None and "`fieldtui-agent engines rebuild --backend tensorrt --precision fp16`" in why


def test_a_patch_upgrade_makes_an_engine_stale_unless_built_version_compatible(
    trt, cuda, tmp_path, monkeypatch
):
    """TensorRT plans load only in the exact version that built them: 10.3.0 -> 10.3.1 is stale (it
    showed "ok" when only major.minor were compared, then failed to deserialise). A plan built with
    BuilderFlag.VERSION_COMPATIBLE says so in its fingerprint, loads in later versions, not older ones."""
    from agent.engines.store import EngineStore, engine_key

    plain = Build(tmp_path / "plain", "fp16")
    compatible = Build(tmp_path / "compatible", "fp16", version_compatible=True)
    assert not plain.fingerprint.version_compatible and compatible.fingerprint.version_compatible
    assert trt.BUILDS[-1]["flags"] == ["FP16", "VERSION_COMPATIBLE"]
    assert any("version-compatible plan" in line for line in compatible.log)
    monkeypatch.setattr(trt, "__version__", "10.3.1.5")
    with pytest.raises(StaleEngine, match=r"built with TensorRT 10\.3\.0\.26 .*this device has 10\.3\.1\.5"):
        Detector.load(plain.path, backend="tensorrt")
    with Detector.load(compatible.path, backend="tensorrt") as det:  # runs through its lean runtime
        assert len(det.detect(DemoScene(seed=1).render(0.5)[0]).boxes) >= 0
    monkeypatch.setattr(trt, "__version__", "10.2.0.19")
    with pytest.raises(StaleEngine, match="this device has the older 10.2.0.19"):
        Detector.load(compatible.path, backend="tensorrt")
    # the engine list says the same (what GET /v1/engines and the engine_stale metric read)
    monkeypatch.setattr(trt, "__version__", "10.3.1.5")
    store = EngineStore(tmp_path / "engines")
    key = engine_key("tensorrt", "fp16", "0" * 64)
    with store.stage(key, "tensorrt") as staged:
        staged.engine_path.write_bytes(plain.path.read_bytes())
        store.commit(staged, plain.fingerprint.model_copy(update={"source_sha256": "0" * 64}), {})
    (info,) = store.list([TensorRtBackend.identity()])
    assert info.stale and "this device has 10.3.1.5" in info.stale_reason
