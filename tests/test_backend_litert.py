"""The LiteRT backend on real .tflite files: the demo model converted by packaging/demo-model/tflite.py
(float32 and full-integer INT8, Ultralytics' normalised-box layout and zip metadata), run by the real
``ai-edge-litert`` interpreter through the agent's own Detector, scored against the ONNX model it was
converted from; and every bad file refused with one line while the store keeps what it had.

No Coral Edge TPU or libedgetpu can be had here: the Edge TPU paths tested are the refusals and the
device detection (on a sysfs/dev tree made in tmp_path), never a run on a TPU.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import AgentError, ModelError
from agent.core.state import StateDB
from agent.frames.sources.demo import CLASSES, DemoScene
from agent.inference.agreement import f1_score
from agent.inference.backends import doctor
from agent.inference.backends.edgetpu import delegate_library, edgetpu_status
from agent.inference.backends.litert import LiteRtBackend, tflite_metadata
from agent.inference.detector import Detector, demo_model_path
from agent.store.activation import ModelManager
from agent.store.history import ModelHistory
from agent.store.models import ModelStore, format_for
from agent.store.settings import ModelSettings
from tests import storemodels as sm

pytest.importorskip("ai_edge_litert.interpreter")

ASSETS = demo_model_path().parent
FLOAT32 = ASSETS / "demo_float32.tflite"
INT8 = ASSETS / "demo_int8.tflite"
CLASSIFIER = Path(__file__).parents[1] / "packaging" / "demo-model" / "tflite" / "classifier.tflite"
# the full-integer model with uint8 input and output (tflite.py --io-dtype uint8 --out DIR, demo_int8.tflite)
UINT8 = Path(__file__).parents[1] / "packaging" / "demo-model" / "tflite" / "demo_uint8.tflite"
SEEDS = range(0, 40)  # held-out demo scenes (training uses 1,000,000..)
NAMES = dict(enumerate(CLASSES))


def frames() -> list[np.ndarray]:
    out = []
    for seed in SEEDS:
        frame, _ = DemoScene(640, 480, seed).render_annotated(
            float(np.random.default_rng(seed).uniform(0, 600))
        )
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def demo_frames() -> list[np.ndarray]:
    return frames()


@pytest.fixture(scope="module")
def onnx_detections(demo_frames):
    with Detector.load(None, threads=2) as det:
        return [det.detect(f) for f in demo_frames]


def agreement_with_onnx(path: Path, demo_frames, onnx_detections) -> tuple[float, int]:
    with Detector.load(path, backend="litert", threads=2) as det:
        assert det.layout == "yolov8" and det.input_shape == (1, 3, 256, 256)
        assert det.names == NAMES  # from the metadata.json zipped into the .tflite
        found = [det.detect(f) for f in demo_frames]
    return f1_score(zip(onnx_detections, found, strict=True)), sum(len(d) for d in found)


def test_doctor_lists_litert_ready_and_says_what_the_edge_tpu_lacks():
    [info] = [i for i in doctor() if i.key == "litert"]
    assert info.available and info.version and "XNNPACK" in info.providers
    assert "Edge TPU: " in info.reason and "libedgetpu" in info.reason  # none on this machine


def test_float32_tflite_agrees_with_the_onnx_model(demo_frames, onnx_detections):
    f1, n = agreement_with_onnx(FLOAT32, demo_frames, onnx_detections)
    assert n > 3 * len(SEEDS)  # the demo scene shows 3 to 7 shapes: it really detects
    assert f1 >= 0.95, f1


def test_int8_tflite_is_full_integer_and_still_agrees(demo_frames, onnx_detections):
    with LiteRtBackend(INT8, threads=2) as backend:
        raw_in = backend._in
        assert np.dtype(raw_in["dtype"]) in (np.int8, np.uint8) and raw_in["quantization"][0] > 0
        assert all(q is not None for q in backend._out_quant)  # every output dequantised
        assert backend.inputs[0].shape == (1, 3, 256, 256) and backend.inputs[0].dtype == np.float32
    f1, _ = agreement_with_onnx(INT8, demo_frames, onnx_detections)
    assert f1 >= 0.95, f1  # measured 0.997 (158 of 159); a broken quantisation scores near 0


def test_uint8_input_and_output_are_quantised_with_their_zero_points(demo_frames, onnx_detections):
    with LiteRtBackend(UINT8, threads=2) as backend:
        assert np.dtype(backend._in["dtype"]) == np.uint8 and backend._in_quant[0] > 0
        assert [np.dtype(d["dtype"]) for d in backend._out_details] == [np.uint8]
    f1, _ = agreement_with_onnx(UINT8, demo_frames, onnx_detections)
    assert f1 >= 0.95, f1


def test_boxes_are_scaled_back_from_the_normalised_head(demo_frames, onnx_detections):
    with Detector.load(FLOAT32, backend="litert", threads=2) as det:
        boxes = det.detect(demo_frames[0]).boxes
    ref = onnx_detections[0].boxes
    assert len(boxes) and np.asarray(boxes).max() > 50  # pixels of a 640x480 frame, not 0..1
    assert np.abs(np.sort(np.asarray(boxes), 0) - np.sort(np.asarray(ref), 0)).max() < 3.0


def test_normalised_boxes_are_scaled_back_by_ultralytics_rule():
    """Ultralytics' LiteRT loader's rule, on a non-square input (h 256, w 320): the raw head
    ``[1, 4+nc, N]`` has normalised xywh rows; end-to-end ``[1, K, 6]`` has normalised xyxy columns in an
    NHWC (onnx2tf) export and pixels in an NCHW (litert-torch) one. Scores and class ids are left alone."""
    e2e = np.array([[[0.1, 0.2, 0.3, 0.4, 0.9, 1.0]]], np.float32)
    raw = np.array([[[0.5], [0.5], [0.25], [0.25], [0.8], [0.1]]], np.float32)
    with LiteRtBackend(FLOAT32, threads=1) as backend:
        assert backend._nhwc and backend._end2end is None  # the demo: onnx2tf, no end2end key
        nhwc_e2e = backend._denormalise(e2e, 256, 320)
        nhwc_raw = backend._denormalise(raw, 256, 320)
        backend._nhwc = False
        nchw_e2e = backend._denormalise(e2e, 256, 320)
        backend._end2end = False  # the metadata says raw head: rows, whatever the last axis is
        nchw_raw = backend._denormalise(raw, 256, 320)
    np.testing.assert_allclose(nhwc_e2e[0, 0], [32.0, 51.2, 96.0, 102.4, 0.9, 1.0], rtol=1e-6)
    np.testing.assert_allclose(nchw_e2e, e2e)
    for out in (nhwc_raw, nchw_raw):
        np.testing.assert_allclose(out[0, :, 0], [160.0, 128.0, 80.0, 64.0, 0.8, 0.1], rtol=1e-6)


def test_names_from_metadata_json_a_dict_repr_or_else_a_labels_file(tmp_path):
    assert tflite_metadata(FLOAT32)["names"] == repr(NAMES)
    data = FLOAT32.read_bytes()
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(data[: data.index(b"PK\x03\x04")])  # the flatbuffer without the zip
    assert tflite_metadata(bare) == {}
    legacy = tmp_path / "legacy.tflite"  # older Ultralytics: a Python dict repr in metadata.txt
    legacy.write_bytes(bare.read_bytes())
    with zipfile.ZipFile(legacy, "a") as zf:
        zf.writestr("metadata.txt", str({"names": {0: "a", 1: "b", 2: "c", 3: "d"}, "imgsz": [256, 256]}))
    assert tflite_metadata(legacy)["names"] == repr({0: "a", 1: "b", 2: "c", 3: "d"})
    (tmp_path / "labels.txt").write_text("w\nx\ny\nz\n")
    with Detector.load(bare, backend="litert", threads=1) as det:
        assert det.names == {0: "w", 1: "x", 2: "y", 3: "z"}


@pytest.fixture
def manager(tmp_path: Path, tiny_model: Path):
    db = StateDB(tmp_path / "state.db")
    store = ModelStore(tmp_path / "models", ModelSettings(keep=3))
    yield ModelManager(store, ModelHistory(db), config_model=str(tiny_model))
    db.close()


def push(manager: ModelManager, path: Path, version: str):
    data = path.read_bytes()
    upload = manager.begin_upload(version, sm.sha256(path), size=len(data), fmt=format_for(path.name),
                                  source="test")  # fmt: skip
    upload.write(data)
    return upload.finish()


def test_a_tflite_push_is_validated_by_loading_it(manager):
    manifest, created = push(manager, INT8, "v1")
    assert created and manifest.backend == "litert" and manifest.layout == "yolov8"
    assert manifest.names == NAMES and manifest.input_shape == [1, 3, 256, 256]
    assert (manager.store.root / "v1" / "model.tflite").read_bytes() == INT8.read_bytes()


def rewritten(source: Path, dest: Path, edit) -> Path:
    """``source`` with ``edit(model)`` applied through the TFLite flatbuffer schema LiteRT ships."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(source.read_bytes(), 0))
    edit(model, schema)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dest.write_bytes(bytes(builder.Output()))
    return dest


def int8_without_output_quantisation(tmp_path: Path) -> Path:
    """The INT8 demo model with its output's quantisation parameters removed."""

    def drop(model, schema):
        graph = model.subgraphs[0]
        graph.tensors[graph.outputs[0]].quantization = None

    return rewritten(INT8, tmp_path / "noquant.tflite", drop)


def with_edgetpu_op(tmp_path: Path) -> Path:
    """The float32 demo model carrying the op code ``edgetpu_compiler`` writes (``edgetpu-custom-op``):
    what the store sees of an Edge TPU model (it stores every upload as model.tflite)."""

    def add(model, schema):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = "edgetpu-custom-op"
        model.operatorCodes.append(code)

    return rewritten(FLOAT32, tmp_path / "compiled.tflite", add)


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(FLOAT32.read_bytes()[: FLOAT32.stat().st_size // 2])
    text = tmp_path / "notes.tflite"
    text.write_text("not a model\n" * 10)
    return {
        "classifier": (CLASSIFIER, "output shapes"),
        "truncated": (truncated, "is not a loadable TFLite model"),
        "text": (text, "no TFL3 flatbuffer header"),
        "noquant": (int8_without_output_quantisation(tmp_path), "without quantisation parameters"),
        "edgetpu": (with_edgetpu_op(tmp_path), "is an Edge TPU model and cannot run here: libedgetpu"),
    }


def test_bad_tflite_files_are_refused_in_one_line_and_the_store_keeps_what_it_had(manager, tmp_path):
    push(manager, FLOAT32, "good")
    manager.store.set_current("good")
    for version, (path, why) in bad_files(tmp_path).items():
        with pytest.raises(ModelError) as err:
            push(manager, path, version)
        message = str(err.value)
        assert why in message and "\n" not in message, message
        assert f"{version} is not a usable detector" in message
    assert [m.version for m in manager.store.versions()] == ["good"]
    assert manager.store.current() == "good" and manager.store.verify("good").backend == "litert"
    assert list(manager.store.staging.iterdir()) == [] if manager.store.staging.exists() else True


def test_an_edge_tpu_model_by_name_without_the_delegate_is_refused_saying_what_is_missing(tmp_path):
    model = tmp_path / "demo_edgetpu.tflite"
    shutil.copyfile(FLOAT32, model)
    with pytest.raises(ModelError) as err:
        Detector.load(model, backend="litert")
    assert "Edge TPU model and cannot run here" in str(err.value) and "libedgetpu1-std" in str(err.value)
    assert "push the plain (non-_edgetpu) .tflite" in str(err.value)


def test_an_edge_tpu_model_whose_delegate_does_not_load_is_refused_in_one_line(tmp_path, monkeypatch):
    """With a device and a library named present, LiteRT's real ``load_delegate`` is handed a shared
    library that is not a delegate (libm): its refusal becomes the technician's line, not a crash."""
    import ctypes.util

    from agent.inference.backends import edgetpu, litert

    libm = ctypes.util.find_library("m")
    assert libm
    monkeypatch.setattr(
        litert, "edgetpu_status", lambda: edgetpu.EdgeTpuStatus(True, "Coral USB Accelerator")
    )
    monkeypatch.setattr(litert, "delegate_library", lambda: libm)
    model = tmp_path / "demo_edgetpu.tflite"
    shutil.copyfile(FLOAT32, model)
    with pytest.raises(ModelError) as err:
        LiteRtBackend(model, threads=1)
    message = str(err.value)
    assert "is an Edge TPU model but the Edge TPU delegate did not load" in message and "\n" not in message
    assert "not a delegate library" in message


def test_the_benchmark_runs_litert_beside_onnxruntime_on_the_demo_model_with_agreement(tmp_path):
    from agent.bench.frames import scene_frames
    from agent.bench.runner import run_model_benchmarks
    from fieldtui.protocol import BenchmarkRequest

    assert LiteRtBackend.model_for_precision(demo_model_path(), "int8") == (INT8, None)
    assert LiteRtBackend.model_for_precision(FLOAT32, "fp32") == (FLOAT32, None)
    assert "is the fp32 conversion" in LiteRtBackend.model_for_precision(FLOAT32, "int8")[1]
    stored = tmp_path / "model.tflite"  # the store's name for every version: read from the file
    shutil.copyfile(INT8, stored)
    assert LiteRtBackend.model_for_precision(stored, "int8") == (stored, None)
    request = BenchmarkRequest(backends=["litert", "onnxruntime"], precisions=["fp32", "int8"], threads=[1],
                               iterations=5, warmup=1, accuracy_frames=6)  # fmt: skip
    results = run_model_benchmarks(demo_model_path(), request, scene_frames(8))
    by = {(r.config.backend, r.config.precision): r for r in results}
    for precision in ("fp32", "int8"):
        lite = by[("litert", precision)]
        assert lite.status == "ok", lite.reason
        assert lite.latency.p50_ms > 0 and lite.agreement_frames == 6 and lite.agreement_f1 >= 0.9
    assert by[("onnxruntime", "int8")].status == "skipped"  # no INT8 engine built here


def test_rebuild_for_litert_is_refused_with_the_reason():
    identity = LiteRtBackend.identity()
    assert not identity.can_build and "edgetpu_compiler" in identity.build_note
    with pytest.raises(AgentError) as err:
        LiteRtBackend.build_engine(demo_model_path(), Path("x.tflite"), precision="int8")
    assert err.value.status == 422 and "representative dataset and TensorFlow" in str(err.value)


# --- Coral Edge TPU detection on a made-up sysfs / dev tree ---------------------------------------


def usb_device(root: Path, name: str, vendor: str, product: str, speed: str, bus: int, dev: int) -> None:
    d = root / "sys_usb" / name
    d.mkdir(parents=True)
    for key, value in (("idVendor", vendor), ("idProduct", product), ("speed", speed),
                       ("busnum", str(bus)), ("devnum", str(dev))):  # fmt: skip
        (d / key).write_text(value + "\n")


def status(root: Path, *, lib: bool, platform: str = "linux", can_open=lambda node: True):
    libs = root / "lib"
    libs.mkdir(parents=True, exist_ok=True)
    if lib:
        (libs / delegate_library(platform)).write_bytes(b"")
    for sub in ("sys_usb", "sys_pci", "dev", "udev"):
        (root / sub).mkdir(exist_ok=True)
    return edgetpu_status(sys_usb=root / "sys_usb", sys_pci=root / "sys_pci", dev=root / "dev",
                          lib_dirs=(libs,), udev_dirs=(root / "udev",), platform=platform,
                          can_open=can_open)  # fmt: skip


def test_edge_tpu_status_says_precisely_what_is_missing(tmp_path):
    assert [delegate_library(p) for p in ("linux", "darwin", "win32")] == [
        "libedgetpu.so.1", "libedgetpu.1.dylib", "edgetpu.dll"]  # fmt: skip
    nothing = status(tmp_path / "a", lib=False)
    assert (
        not nothing.ok and "libedgetpu1-std" in nothing.reason and "no Coral Edge TPU found" in nothing.reason
    )

    usb3 = tmp_path / "b"
    usb_device(usb3, "2-1", "18d1", "9302", "5000", 2, 3)
    no_lib = status(usb3, lib=False)
    assert not no_lib.ok and "no Coral" not in no_lib.reason and "libedgetpu.so.1 not found" in no_lib.reason
    ready = status(usb3, lib=True)
    assert ready.ok and "Coral USB Accelerator" in ready.reason and "USB 2" not in ready.reason

    usb2 = tmp_path / "c"
    usb_device(usb2, "1-1", "1a6e", "089a", "480", 1, 4)
    slow = status(usb2, lib=True)
    assert slow.ok and "firmware not yet loaded" in slow.reason and "use a USB 3 port" in slow.reason

    pci = tmp_path / "d"
    card = pci / "sys_pci" / "0000:01:00.0"
    card.mkdir(parents=True)
    (card / "vendor").write_text("0x1ac1\n")
    (card / "device").write_text("0x089a\n")
    no_driver = status(pci, lib=True)
    assert not no_driver.ok and "gasket-dkms" in no_driver.reason
    (pci / "dev").mkdir(exist_ok=True)
    (pci / "dev" / "apex_0").write_text("")
    assert status(pci, lib=True).ok


def test_an_edge_tpu_node_this_user_cannot_open_asks_for_the_udev_rule(tmp_path):
    usb_device(tmp_path, "2-1", "18d1", "9302", "5000", 2, 3)
    node = tmp_path / "dev" / "bus" / "usb" / "002" / "003"
    node.parent.mkdir(parents=True)
    node.write_text("")
    opened = []

    def cannot(path: Path) -> bool:  # as os.access answers a user outside plugdev (tests run as root)
        opened.append(path)
        return False

    result = status(tmp_path, lib=True, can_open=cannot)
    assert opened == [node]
    assert not result.ok and "not writable by this user: install the udev rule" in result.reason
    (tmp_path / "udev" / "60-libedgetpu1-std.rules").write_text("")
    assert "replug the Accelerator" in status(tmp_path, lib=True, can_open=cannot).reason


# --- through a real agent on 127.0.0.1: push, activate, serve ---------------------------------------


def test_a_pushed_tflite_is_activated_and_served_and_a_bad_one_changes_nothing(inproc_agent, tmp_path):
    from tests.storeclient import activate, listing, wait_for

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 1.5\nprobation_min_frames = 5\n")
    # serving the demo ONNX model: the activation check holds a new model to 3x its latency + 5 ms
    agent = inproc_agent(home, source="demo:?fps=20&size=320x240", model=demo_model_path())

    def put(path: Path, version: str):
        headers = {"X-Model-Sha256": sm.sha256(path), "X-Model-Format": "tflite"}
        return c.put(f"/v1/models/{version}", content=path.read_bytes(), headers=headers)

    with agent.client() as c:
        assert put(FLOAT32, "t1").status_code == 201
        job = activate(c, "t1")
        assert job.state == "succeeded", job.error
        status = wait_for(lambda: (s := c.get("/v1/status").json())["model"]["version"] == "t1" and s)
        assert status["model"]["backend"] == "litert" and status["model"]["path"].endswith("model.tflite")
        served = status["model"]["path"]
        r = put(with_edgetpu_op(tmp_path), "tpu")
        assert r.status_code == 422 and r.json()["detail"].startswith("tpu is not a usable detector: ")
        assert "Edge TPU model and cannot run here" in r.json()["detail"]
        assert [v.version for v in listing(c).versions] == ["t1"]
        assert c.get("/v1/status").json()["model"]["path"] == served
