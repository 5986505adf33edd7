"""An Edge TPU model through LiteRT's real ``load_delegate`` and a FAKE libedgetpu (tests/fakes/libedgetpu_fake,
a C delegate built here with the system compiler), and every way an Edge TPU model cannot run refused in
one line while the store keeps serving what it had.

No Coral Edge TPU or libedgetpu can be had here: the "device" is a made-up sysfs/dev tree read by the real
detection code (agent/inference/backends/edgetpu.py), the "Edge TPU model" is made by the fake's stand-in
for edgetpu_compiler (the INT8 demo model's quantised input and output around one ``edgetpu-custom-op``
holding the float32 demo model), and the delegate is the fake library. Real: LiteRT, its plugin loading,
its delegate partitioning, the agent's backend, Detector and model store.
"""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from agent.core.errors import ModelError
from agent.core.state import StateDB
from agent.frames.sources.demo import CLASSES, DemoScene
from agent.inference.agreement import f1_score
from agent.inference.backends import edgetpu, litert
from agent.inference.detector import Detector, demo_model_path
from agent.store.activation import ModelManager
from agent.store.history import ModelHistory
from agent.store.models import ModelStore, format_for
from agent.store.settings import ModelSettings
from tests import storemodels as sm
from tests.fakes import libedgetpu_fake as fake

pytest.importorskip("ai_edge_litert.interpreter")
if fake.compiler() is None:
    pytest.skip("no C compiler (cc or gcc) to build tests/fakes/libedgetpu_fake", allow_module_level=True)

ASSETS = demo_model_path().parent
FLOAT32, INT8 = ASSETS / "demo_float32.tflite", ASSETS / "demo_int8.tflite"
NAMES = dict(enumerate(CLASSES))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("edgetpu")
    return SimpleNamespace(lib=fake.build(out), model=fake.compile_for_edgetpu(INT8, FLOAT32, out))


def machine(root: Path, lib: Path | None, *, usb_speed: str | None = "5000", pcie_without_driver=False,
            writable=True, udev_rule=False):  # fmt: skip
    """``edgetpu_status`` on a made-up machine under ``root``: libedgetpu installed or not, a USB
    Accelerator at ``usb_speed`` Mb/s (none when None) or a PCIe card without its driver."""
    for sub in ("sys_usb", "sys_pci", "dev", "udev", "lib"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if lib is not None:
        (root / "lib" / lib.name).symlink_to(lib)
    if usb_speed is not None:
        d = root / "sys_usb" / "2-1"
        d.mkdir()
        for key, value in (("idVendor", "18d1"), ("idProduct", "9302"), ("speed", usb_speed),
                           ("busnum", "2"), ("devnum", "3")):  # fmt: skip
            (d / key).write_text(value + "\n")
        node = root / "dev" / "bus" / "usb" / "002" / "003"
        node.parent.mkdir(parents=True)
        node.write_text("")
    if pcie_without_driver:
        card = root / "sys_pci" / "0000:01:00.0"
        card.mkdir()
        (card / "vendor").write_text("0x1ac1\n")
        (card / "device").write_text("0x089a\n")
    if udev_rule:
        (root / "udev" / "60-libedgetpu1-std.rules").write_text("")
    return lambda: edgetpu.edgetpu_status(
        sys_usb=root / "sys_usb", sys_pci=root / "sys_pci", dev=root / "dev", lib_dirs=(root / "lib",),
        udev_dirs=(root / "udev",), platform="linux", can_open=lambda node: writable,
    )  # fmt: skip


@pytest.fixture
def on(monkeypatch, built, tmp_path):
    """``on(**machine_kwargs)``: the backend sees that machine, and loads the fake as libedgetpu.so.1."""

    def use(*, lib=True, **kwargs):
        root = tmp_path / f"machine{len(list(tmp_path.glob('machine*')))}"
        monkeypatch.setattr(litert, "edgetpu_status", machine(root, built.lib if lib else None, **kwargs))
        monkeypatch.setattr(litert, "delegate_library", lambda: str(root / "lib" / fake.LIBRARY_NAME))

    return use


def scenes(count: int = 24) -> list[np.ndarray]:
    rng = [np.random.default_rng(seed).uniform(0, 600) for seed in range(count)]
    return [DemoScene(640, 480, seed).render_annotated(float(t))[0] for seed, t in enumerate(rng)]


def test_without_the_delegate_litert_itself_cannot_run_the_compiled_model(built):
    """What makes it an Edge TPU model: the op only the delegate runs (LiteRT's own words)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(built.model))
    with pytest.raises(RuntimeError, match="unresolved custom op: edgetpu-custom-op"):
        interp.allocate_tensors()


def test_an_edge_tpu_model_runs_through_the_delegate_and_agrees_with_the_float_model(built, on):
    on(usb_speed="5000")
    frames = scenes()
    ok, reason = litert.LiteRtBackend.available()
    assert ok and "Edge TPU: Coral USB Accelerator at " in reason and "USB 2" not in reason
    assert litert.LiteRtBackend.providers() == ["EdgeTPU", "XNNPACK"]
    assert litert.LiteRtBackend.identity().device == "Coral Edge TPU"
    with Detector.load(FLOAT32, backend="litert", threads=1) as det:
        reference = [det.detect(f) for f in frames]
    before = fake.live_delegates(built.lib)
    with Detector.load(built.model, backend="litert", threads=1) as det:
        assert det.backend.edgetpu and fake.live_delegates(built.lib) == before + 1
        assert det.names == NAMES and det.layout == "yolov8"  # names from the zip metadata it carries
        found = [det.detect(f) for f in frames]
    gc.collect()
    assert fake.live_delegates(built.lib) == before  # LiteRT destroyed the delegate with the interpreter
    f1 = f1_score(zip(reference, found, strict=True))
    assert sum(len(d) for d in reference) > len(frames) and f1 >= 0.95, f1


def test_on_a_usb2_port_it_runs_and_doctor_asks_for_a_usb3_port(built, on):
    on(usb_speed="480")
    assert "use a USB 3 port" in litert.LiteRtBackend.available()[1]
    with Detector.load(built.model, backend="litert", threads=1) as det:
        assert len(det.detect(scenes(1)[0])) > 0


@pytest.fixture
def manager(tmp_path: Path, tiny_model: Path):
    db = StateDB(tmp_path / "state.db")
    yield ModelManager(ModelStore(tmp_path / "models", ModelSettings(keep=3)), ModelHistory(db),
                       config_model=str(tiny_model))  # fmt: skip
    db.close()


def push(manager: ModelManager, path: Path, version: str):
    data = path.read_bytes()
    upload = manager.begin_upload(version, sm.sha256(path), size=len(data), fmt=format_for(path.name),
                                  source="test")  # fmt: skip
    upload.write(data)
    return upload.finish()


MISSING = {
    "no libedgetpu": (
        dict(lib=False),
        "libedgetpu.so.1 not found: install libedgetpu1-std from Coral's apt repository",
    ),  # fmt: skip
    "no device": (
        dict(usb_speed=None),
        "no Coral Edge TPU found (USB 1a6e:089a or 18d1:9302, PCIe /dev/apex_*)",
    ),
    "no udev rule": (dict(writable=False), "is not writable by this user: install the udev rule"),
    "not replugged": (
        dict(writable=False, udev_rule=True),
        "replug the Accelerator so the udev rule applies",
    ),
    "no PCIe driver": (dict(usb_speed=None, pcie_without_driver=True), "install the gasket-dkms driver"),
}


def test_an_edge_tpu_model_is_stored_with_the_delegate_and_refused_saying_what_is_missing(built, on, manager):
    on()
    manifest, _ = push(manager, built.model, "tpu")
    assert manifest.backend == "litert" and manifest.names == NAMES
    manager.store.set_current("tpu")
    for case, (kwargs, why) in MISSING.items():
        on(**kwargs)
        with pytest.raises(ModelError) as err:
            push(manager, built.model, case.replace(" ", "-"))
        message = str(err.value)
        assert "is an Edge TPU model and cannot run here: " in message and why in message, message
        assert "push the plain (non-_edgetpu) .tflite" in message and "\n" not in message
    assert [m.version for m in manager.store.versions()] == ["tpu"] and manager.store.current() == "tpu"


def test_a_rebuild_for_the_edge_tpu_is_refused_saying_where_it_is_compiled_and_what_to_push(on):
    from agent.engines.build import CannotBuild, check_buildable

    on()  # even with a Coral plugged in: edgetpu_compiler does not run on a device
    with pytest.raises(CannotBuild) as err:
        check_buildable("litert", "int8")
    message = str(err.value)
    assert err.value.status == 422 and message.startswith("cannot build litert engines on this device: ")
    assert "edgetpu_compiler, on a Linux x86-64 host only" in message
    assert "fieldtui push HOST model_int8_edgetpu.tflite" in message
