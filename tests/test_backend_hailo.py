"""Hailo backend: HEFs through HailoRT's InferModel API, on-chip NMS output turned into detections,
device arch and firmware, the driver/library version mismatch, and why engines are not built here.

HailoRT cannot be installed here: these tests run our code against the FAKE ``hailo_platform`` in
tests/fakes (put on the path per test), whose "HEF" wraps the demo ONNX model and whose "on-chip NMS"
runs it with ONNX Runtime. Nothing here has run on a Hailo device.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import AgentError, BackendUnavailable, ModelError
from agent.engines.fingerprint import StaleEngine, write_fingerprint
from agent.frames.sources.demo import DemoScene
from agent.inference import postprocess as post
from agent.inference.agreement import f1_score
from agent.inference.backends import BACKENDS, get_backend
from agent.inference.backends import hailo as hailo_backend
from agent.inference.backends.hailo import BUILD_NOTE, HailoBackend, nms_rows
from agent.inference.backends.sidecar import onnx_metadata, write_metadata
from agent.inference.detector import Detector, demo_model_path
from agent.inference.preprocess import letterbox
from agent.store.upload import inspect_model
from fieldtui.protocol import EngineFingerprint
from tests.sdk_fakes import fake_sdks

FIX = "install the hailort_4.20.0 .deb and the hailort-pcie-driver_4.20.0 .deb from the Hailo Developer Zone"


@pytest.fixture
def hp(monkeypatch):
    with fake_sdks(monkeypatch):
        monkeypatch.delenv("FIELDTUI_FAKE_HAILO_DRIVER", raising=False)
        monkeypatch.setattr(hailo_backend, "DRIVER_VERSION_FILE", Path("/nonexistent/hailo_pci/version"))
        yield importlib.import_module("hailo_platform")


def make_hef(hp, tmp_path: Path, arch: str = "HAILO8L", *, sidecar: bool = True) -> Path:
    folder = tmp_path / f"hef-{arch}"
    folder.mkdir(parents=True, exist_ok=True)
    path = hp.make_hef(demo_model_path(), folder / "model.hef", arch=arch)
    if sidecar:  # what a rebuild or push keeps beside the engine: the source model's names
        write_metadata(path, onnx_metadata(demo_model_path()))
    return path


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    scene = DemoScene(seed=21)
    return [scene.render(0.9 * i + 0.2)[0] for i in range(6)]


def test_registered_and_unavailable_without_hailort(tmp_path):
    assert get_backend("hailo") is HailoBackend is BACKENDS["hailo"]
    ok, reason = HailoBackend.available()
    assert not ok and reason.startswith("hailo_platform not importable: install the HailoRT wheel matching")
    here = HailoBackend.identity()
    assert not here.available and not here.can_build and here.build_note == BUILD_NOTE
    hef = tmp_path / "model.hef"
    hef.write_bytes(b"not opened: HailoRT is missing")
    with pytest.raises(
        ModelError, match=r"v2 is a \.hef model, which this device cannot load \(hailo_platform not"
    ):
        inspect_model(hef, "hef", version="v2")


def test_build_engine_explains_hefs_are_compiled_off_device(tmp_path):
    with pytest.raises(AgentError) as err:
        HailoBackend.build_engine(
            demo_model_path(), tmp_path / "model.hef", precision="int8", input_shape=(1, 3, 256, 256),
            source_sha256="0" * 64, progress=lambda *a: None, check_cancelled=lambda: None, log=print,
        )  # fmt: skip
    assert err.value.status == 422
    assert str(err.value) == (
        "HEFs are compiled off-device with Hailo's Dataflow Compiler (hailo optimize / hailo compiler on an "
        "x86 host), then push the .hef: fieldtui push HOST model.hef --version V"
    )
    assert not (tmp_path / "model.hef").exists()


def test_identity_reports_arch_and_firmware(hp, monkeypatch):
    assert HailoBackend.available() == (True, "HailoRT 4.20.0 on Hailo-8L (HAILO8L), firmware 4.20.0")
    here = HailoBackend.identity()
    assert (here.runtime, here.runtime_version, here.device, here.compute) == (
        "hailo",
        "4.20.0",
        "HAILO8L",
        "4.20.0",
    )
    assert here.available and not here.can_build and "Dataflow Compiler" in here.build_note
    monkeypatch.setattr(hp, "FAKE_ARCH", "HAILO8")
    assert HailoBackend.available() == (True, "HailoRT 4.20.0 on Hailo-8 (HAILO8), firmware 4.20.0")
    monkeypatch.setattr(hp, "FAKE_DEVICES", [])
    ok, reason = HailoBackend.available()
    assert not ok and "found no Hailo device" in reason


def test_driver_mismatch_is_unavailable_with_the_fix(hp, monkeypatch, tmp_path, capfd):
    hef = make_hef(hp, tmp_path)
    monkeypatch.setattr(hp, "FAKE_DRIVER_VERSION", "4.18.0")
    ok, reason = HailoBackend.available()
    assert not ok
    assert reason.startswith("HailoRT library 4.20.0 cannot use this device: the PCIe driver is another version "
                             "(HAILO_INVALID_DRIVER_VERSION); " + FIX)  # fmt: skip
    assert "Driver version (4.18.0) is different from library version (4.20.0)" in capfd.readouterr().err
    # Where the loaded driver states its version, the message names it.
    version_file = tmp_path / "version"
    version_file.write_text("4.18.0\n")
    monkeypatch.setattr(hailo_backend, "DRIVER_VERSION_FILE", version_file)
    assert "the PCIe driver is 4.18.0 (HAILO_INVALID_DRIVER_VERSION)" in HailoBackend.available()[1]
    with pytest.raises(BackendUnavailable, match="HAILO_INVALID_DRIVER_VERSION.*hailort-pcie-driver_4.20.0"):
        Detector.load(hef, backend="hailo")
    # The environment knob of the fake does the same (for running the agent by hand against it).
    monkeypatch.setattr(hp, "FAKE_DRIVER_VERSION", None)
    assert HailoBackend.available()[0]
    monkeypatch.setenv("FIELDTUI_FAKE_HAILO_DRIVER", "4.21.0")
    assert not HailoBackend.available()[0]


def test_firmware_mismatch_is_unavailable_with_the_fix(hp, monkeypatch):
    monkeypatch.setattr(hp, "FAKE_FIRMWARE_VERSION", "4.17.1")
    ok, reason = HailoBackend.available()
    assert not ok and reason == f"Hailo-8L firmware 4.17.1 does not match HailoRT library 4.20.0: {FIX} (or the " \
        "HailoRT wheel matching the driver), reboot, and check with hailortcli fw-control identify"  # fmt: skip


def test_hef_detections_match_onnxruntime(hp, tmp_path, frames):
    hef = make_hef(hp, tmp_path)
    with Detector.load(None) as ort, Detector.load(hef, backend="hailo") as det:
        assert det.layout == "hailo_nms" and det.info.format == "hef" and det.info.backend == "hailo"
        assert det.names == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
        assert det.input_shape == (1, 3, 256, 256)
        assert [(s.name, s.shape) for s in det.backend.inputs] == [("demo/input_layer1", (1, 3, 256, 256))]
        pairs = [(ort.detect(f), det.detect(f)) for f in frames]
    assert sum(len(ref) for ref, _ in pairs) >= 6
    assert f1_score(pairs) == 1.0
    for ref, got in pairs:  # same boxes in original pixels, through the normalised on-chip output
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.5)
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)
        np.testing.assert_array_equal(got.class_ids, ref.class_ids)


def test_hef_without_sidecar_takes_a_labels_file(hp, tmp_path, frames):
    hef = make_hef(hp, tmp_path, sidecar=False)
    (hef.parent / "labels.txt").write_text("ring\nbox\ntri\nx\n")
    with Detector.load(hef, backend="hailo") as det:
        assert det.names == {0: "ring", 1: "box", 2: "tri", 3: "x"}


def test_hef_for_another_arch_and_stale_fingerprint(hp, tmp_path, monkeypatch):
    hef8 = make_hef(hp, tmp_path, arch="HAILO8")
    with pytest.raises(ModelError) as err:
        Detector.load(hef8, backend="hailo")
    assert str(err.value) == (
        "model.hef cannot run on this Hailo-8L (HEF file is not compatible with device. See hailort.log for "
        "more information): compile it for HAILO8L (hailo compiler --hw-arch hailo8l)"
    )
    # With a fingerprint, the mismatch is found before HailoRT opens the file.
    opened = []
    monkeypatch.setattr(hp.VDevice, "create_infer_model", lambda self, path, name="": opened.append(path))
    fp = EngineFingerprint(runtime="hailo", runtime_version="4.20.0", device="HAILO8", compute="4.20.0",
                           source_sha256="0" * 64, precision="int8", input_shape=[1, 3, 256, 256])  # fmt: skip
    write_fingerprint(hef8, fp)
    with pytest.raises(StaleEngine, match="model.hef is stale: built with HailoRT 4.20 for HAILO8 4.20.0; "
                       "this device is HAILO8L: rebuild it") as err:  # fmt: skip
        Detector.load(hef8, backend="hailo")
    assert err.value.status == 409 and opened == []


def test_not_a_hef_and_closed(hp, tmp_path):
    bad = tmp_path / "bad.hef"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match=r"bad\.hef is not a HEF HailoRT 4\.20\.0 can load \(Invalid HEF"):
        Detector.load(bad, backend="hailo")
    backend = HailoBackend(make_hef(hp, tmp_path))
    assert backend.layout_hint == ("hailo_nms", 4)
    backend.close()
    backend.close()
    with pytest.raises(ModelError, match="was closed"):
        backend.infer(np.zeros((1, 3, 256, 256), np.float32))


def test_hailo_nms_rows_map_back_through_the_letterbox():
    per_class = [np.zeros((0, 5), np.float32), np.array([[0.25, 0.5, 0.75, 1.0, 0.9]], np.float32),
                 np.array([[0.0, 0.0, 0.5, 0.5, 0.2], [0.1, 0.1, 0.2, 0.2, 0.6]], np.float32)]  # fmt: skip
    rows = nms_rows(per_class)
    assert rows.shape == (1, 3, 6) and rows[0, :, 5].tolist() == [1, 2, 2]
    _, lb = letterbox(np.zeros((480, 640, 3), np.uint8), (256, 256))  # ratio 0.4, 32 px bands top/bottom
    layout = post.OutputLayout("hailo_nms", 3, input_hw=(256, 256))
    dets = post.postprocess([rows], layout, lb, conf=0.25)
    assert dets.class_ids.tolist() == [1, 2] and dets.scores.tolist() == pytest.approx([0.9, 0.6])
    # y 0.25..0.75 of 256 = 64..192, minus the 32 px band = 32..160, / 0.4 = 80..400; x 128..256 -> 320..640
    np.testing.assert_allclose(dets.boxes[0], [320, 80, 640, 400], atol=1e-3)


def test_model_for_precision_a_hef_is_int8(tmp_path):
    hef = tmp_path / "model.hef"
    assert HailoBackend.model_for_precision(hef, "int8") == (hef, None)
    assert "8-bit precision it was compiled with" in HailoBackend.model_for_precision(hef, "fp16")[1]
    path, why = HailoBackend.model_for_precision(demo_model_path(), "int8")
    assert path is None and why.startswith("int8 on hailo: push a .hef compiled from this model (HEFs are")


def test_inference_failure_is_one_line(hp, tmp_path, monkeypatch):
    backend = HailoBackend(make_hef(hp, tmp_path))
    try:

        def timeout(self, bindings, timeout_ms):
            raise hp.HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")

        monkeypatch.setattr(type(backend._configured), "run", timeout)
        with pytest.raises(ModelError, match=r"Hailo inference of model\.hef failed \(Received a timeout"):
            backend.infer(np.zeros((1, 3, 256, 256), np.float32))
    finally:
        backend.close()


def test_hef_from_an_unpaired_compiler_says_which_release(hp, tmp_path, monkeypatch):
    """HailoRT refuses a HEF whose format its release does not support with status 92."""

    def unsupported(self, path, name=""):
        raise hp.HailoRTException("libhailort failed with error: 92 (HAILO_HEF_NOT_SUPPORTED)")

    monkeypatch.setattr(hp.VDevice, "create_infer_model", unsupported)
    with pytest.raises(ModelError, match=r"model\.hef was compiled by a Dataflow Compiler that HailoRT 4\.20\.0 "
                       r"does not support \(HAILO_HEF_NOT_SUPPORTED\): compile it with the DFC of the HailoRT 4\.20"):  # fmt: skip
        Detector.load(make_hef(hp, tmp_path), backend="hailo")


def test_fake_chip_nms_is_its_own_producer(hp):
    """The fake's on-chip NMS shares no code with the agent's postprocess, and writes the documented
    HAILO_NMS_BY_CLASS frame: per class a count, then [y_min, x_min, y_max, x_max, score] normalised."""
    import ast
    import inspect

    from hailo_platform import _infer

    tree = ast.parse(inspect.getsource(_infer))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.split(".")[0] == "agent" for m in imported if m)
    # 4 anchors, 2 classes, on a 100 x 200 (h x w) input: anchors 0 and 1 overlap (IoU 0.78), 2 is apart,
    # 3 scores under the threshold
    raw = np.array(
        [
            [50, 55, 150, 20],  # cx
            [50, 50, 40, 20],  # cy
            [40, 40, 20, 10],  # w
            [20, 20, 10, 10],  # h
            [0.9, 0.8, 0.05, 0.1],  # class 0
            [0.0, 0.0, 0.7, 0.1],  # class 1
        ],
        np.float32,
    )
    head = {"classes": 2, "max_bboxes_per_class": 3, "score_threshold": 0.2, "iou_threshold": 0.7}
    frame = _infer.by_class_frame(raw, head, (100, 200))
    assert frame.shape == (2 * (1 + 5 * 3),)
    assert frame[0] == 1 and frame[16] == 1  # one box per class survives
    np.testing.assert_allclose(frame[1:6], [0.4, 0.15, 0.6, 0.35, 0.9], atol=1e-6)
    np.testing.assert_allclose(frame[17:22], [0.35, 0.7, 0.45, 0.8, 0.7], atol=1e-6)
    assert not frame[6:16].any() and not frame[22:].any()  # padding
