"""Hailo backend: ``.hef`` models on a Hailo-8 / Hailo-8L through HailoRT's InferModel API.

A HEF is compiled off-device (Hailo's Dataflow Compiler) for one device architecture, usually with the
detector's NMS on the chip: its single output is HAILO_NMS_BY_CLASS, per class a list of
``[y_min, x_min, y_max, x_max, score]`` normalised to the input. :meth:`HailoBackend.infer` flattens those
lists into ``[1, K, 6]`` rows (box, score, class) and declares the ``hailo_nms`` layout, which
:mod:`agent.inference.postprocess` maps back through the letterbox like any other detector.

HailoRT refuses to work when the PCIe driver (and the firmware it loads) is not the library's exact
version (HAILO_INVALID_DRIVER_VERSION); ``available()`` says so and how to fix it instead of failing at
load. ``hailo_platform`` is imported inside the functions, never at module top.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import AgentError, BackendUnavailable, ModelError
from agent.engines.fingerprint import StaleEngine, read_fingerprint, stale_reason
from agent.inference.backends.base import Backend, TensorSpec
from agent.inference.backends.probes import probe_hailo
from agent.inference.backends.sidecar import read_metadata
from fieldtui.protocol import EngineFingerprint, RuntimeIdentity

RUN_TIMEOUT_MS = 10_000
DRIVER_VERSION_FILE = Path("/sys/module/hailo_pci/version")  # the loaded PCIe driver's MODULE_VERSION
BUILD_NOTE = (
    "HEFs are compiled off-device with Hailo's Dataflow Compiler (hailo optimize / hailo compiler on an "
    "x86 host), then push the .hef: fieldtui push HOST model.hef --version V"
)
ARCH_NAMES = {"HAILO8": "Hailo-8", "HAILO8L": "Hailo-8L", "HAILO8_A0": "Hailo-8 (A0)", "HAILO8_B0": "Hailo-8"}


def _mismatch_fix(library: str) -> str:
    return (
        f"install the hailort_{library} .deb and the hailort-pcie-driver_{library} .deb from the Hailo "
        "Developer Zone (or the HailoRT wheel matching the driver), reboot, and check with "
        "hailortcli fw-control identify"
    )


def _loaded_driver_version() -> str | None:
    try:
        return DRIVER_VERSION_FILE.read_text().strip() or None
    except OSError:
        return None


def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


@dataclass(frozen=True, slots=True)
class HailoDevice:
    """What this machine offers HailoRT: usable or why not, the library version, arch and firmware."""

    ok: bool
    reason: str
    version: str | None = None
    arch: str | None = None  # HailoRT's DeviceArchitectureTypes name: "HAILO8L"
    firmware: str | None = None  # "4.20.0"


def _driver_mismatch(version: str | None, error: str) -> str | None:
    """The technician's line when HailoRT refused the driver (HAILO_INVALID_DRIVER_VERSION, status 76)."""
    if "INVALID_DRIVER_VERSION" not in error:
        return None
    driver = _loaded_driver_version()
    found = f"the PCIe driver is {driver}" if driver else "the PCIe driver is another version"
    return (
        f"HailoRT library {version} cannot use this device: {found} (HAILO_INVALID_DRIVER_VERSION); "
        f"{_mismatch_fix(version or 'of the library')}"
    )


def probe_device() -> HailoDevice:
    """Import HailoRT, scan and identify the first device, and compare driver and firmware versions
    with the library's (HailoRT requires them equal)."""
    ok, reason, version = probe_hailo()
    if not ok:
        return HailoDevice(False, _driver_mismatch(version, reason) or reason, version)
    hp = importlib.import_module("hailo_platform")
    try:
        with hp.Device() as device:
            board = device.control.identify()
    except Exception as err:  # HailoRTException and friends
        why = _driver_mismatch(version, str(err))
        fix = _mismatch_fix(version or "of the library")
        return HailoDevice(
            False, why or f"HailoRT {version} cannot identify the device ({err}): {fix}", version
        )
    arch = str(board.device_architecture)
    fw = board.firmware_version
    firmware = f"{fw.major}.{fw.minor}.{fw.revision}"
    name = ARCH_NAMES.get(arch, arch)
    # The driver must equal the library exactly (HailoRT checks that itself, above); the firmware it
    # loads is checked by release line, where a mismatch makes inference fail or misbehave.
    if version and _short(firmware) != _short(version):
        return HailoDevice(
            False,
            f"{name} firmware {firmware} does not match HailoRT library {version}: {_mismatch_fix(version)}",
            version,
            arch,
            firmware,
        )
    return HailoDevice(
        True, f"HailoRT {version} on {name} ({arch}), firmware {firmware}", version, arch, firmware
    )


def nms_rows(per_class: list[np.ndarray]) -> np.ndarray:
    """HAILO_NMS_BY_CLASS lists -> ``[1, K, 6]`` float32 rows (y1, x1, y2, x2, score, class)."""
    parts = [
        np.concatenate(
            (np.asarray(boxes, np.float32).reshape(-1, 5), np.full((len(boxes), 1), c, np.float32)), 1
        )
        for c, boxes in enumerate(per_class)
        if len(boxes)
    ]
    rows = np.concatenate(parts) if parts else np.zeros((0, 6), np.float32)
    return rows[None]


class HailoBackend(Backend):
    """A HEF configured on the device's VDevice, one set of bindings; ``infer`` runs it synchronously."""

    key = "hailo"
    model_format = "hef"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        probe = probe_device()
        return probe.ok, probe.reason

    @classmethod
    def version(cls) -> str | None:
        return probe_hailo()[2]

    @classmethod
    def identity(cls) -> RuntimeIdentity:
        probe = probe_device()
        return RuntimeIdentity(
            runtime=cls.key,
            available=probe.ok,
            reason=probe.reason,
            runtime_version=probe.version,
            device=probe.arch,
            compute=probe.firmware,
            can_build=False,
            build_note=BUILD_NOTE,
        )

    @classmethod
    def model_for_precision(cls, path: Path, precision: str) -> tuple[Path | None, str | None]:
        """A HEF is quantised when compiled: it serves as "int8" (Hailo runs 8-bit) and nothing else."""
        if Path(path).suffix != ".hef":
            return None, f"{precision} on hailo: push a .hef compiled from this model ({BUILD_NOTE})"
        if precision == "int8":
            return Path(path), None
        return None, f"{precision} on hailo: a HEF runs at the 8-bit precision it was compiled with"

    @classmethod
    def build_engine(cls, onnx_path: Path, out_path: Path, **options: Any) -> EngineFingerprint:
        """Never on the device (same keywords as :meth:`Backend.build_engine`): say where HEFs come from."""
        raise AgentError(BUILD_NOTE, status=422)

    def __init__(
        self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._vdevice: Any = None
        self._configured: Any = None
        here = self.identity()
        if not here.available:
            raise BackendUnavailable(here.reason)
        built = read_fingerprint(self.path)
        if built is not None:  # before HailoRT opens the file
            why = stale_reason(built, here)
            if why:
                raise StaleEngine(f"{self.path.name} is stale: {why}")
        hp = importlib.import_module("hailo_platform")
        try:
            self._open(hp, here)
        except BaseException:
            self.close()
            raise
        self.metadata = read_metadata(self.path)

    def _open(self, hp: Any, here: RuntimeIdentity) -> None:
        name, arch = self.path.name, here.device or "this device"
        try:
            self._vdevice = hp.VDevice()
            model = self._vdevice.create_infer_model(str(self.path))
        except hp.HailoRTException as err:
            if "HEF_NOT_SUPPORTED" in str(
                err
            ):  # status 92: compiled by a DFC this library does not pair with
                raise ModelError(
                    f"{name} was compiled by a Dataflow Compiler that HailoRT {here.runtime_version} does not "
                    f"support (HAILO_HEF_NOT_SUPPORTED): compile it with the DFC of the HailoRT "
                    f"{_short(here.runtime_version or '')} release, or install the HailoRT it was compiled for"
                ) from None
            raise ModelError(f"{name} is not a HEF HailoRT {here.runtime_version} can load ({err}); "
                             "compile it again or copy it again if the transfer was cut short") from None  # fmt: skip
        outputs = list(model.output_names)
        if len(outputs) != 1 or not model.output(outputs[0]).is_nms:
            raise ModelError(
                f"{name} has {len(outputs)} output(s) without on-chip NMS: the agent runs detection HEFs "
                "compiled with NMS (as the Hailo Model Zoo's YOLO HEFs are)"
            )
        model.input().set_format_type(hp.FormatType.UINT8)
        model.output().set_format_type(hp.FormatType.FLOAT32)
        try:
            self._configured = model.configure()
        except hp.HailoRTException as err:
            raise ModelError(
                f"{name} cannot run on this {ARCH_NAMES.get(arch, arch)} ({err}): compile it for {arch} "
                f"(hailo compiler --hw-arch {arch.lower()})"
            ) from None
        in_stream, out_stream = model.input(), model.output()
        h, w, c = (int(d) for d in in_stream.shape)
        self._input = np.empty((h, w, c), np.uint8)
        self._output = np.empty(tuple(out_stream.shape), np.float32)
        self._bindings = self._configured.create_bindings()
        self._bindings.input().set_buffer(self._input)
        self._bindings.output().set_buffer(self._output)
        nc = int(model.hef.get_output_vstream_infos()[0].nms_shape.number_of_classes)
        self.layout_hint = ("hailo_nms", nc)
        # The Detector's contract is a [1, 3, H, W] float tensor in [0, 1]; the device takes uint8 NHWC.
        self.inputs = [TensorSpec(in_stream.name, (1, c, h, w), np.dtype(np.float32))]
        self.outputs = [TensorSpec(out_stream.name, (1, None, 6), np.dtype(np.float32))]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            configured = self._configured
            if configured is None:
                raise ModelError(f"{self.path.name} was closed (the model was swapped or unloaded)")
            chw = np.asarray(tensor)[0]
            if chw.shape != (self._input.shape[2], *self._input.shape[:2]):
                raise ModelError(
                    f"{self.path.name} takes {list(self.inputs[0].shape)} inputs, got {list(tensor.shape)}"
                )
            # The preprocess writes k/255 for pixel value k, so this recovers the pixels exactly.
            pixels = np.rint(chw.transpose(1, 2, 0) * 255.0)
            np.clip(pixels, 0, 255, out=pixels)
            self._input[...] = pixels
            try:
                configured.run([self._bindings], RUN_TIMEOUT_MS)
                per_class = self._bindings.output().get_buffer()
            except Exception as err:  # HailoRT's exception types (timeout, device lost); one line
                raise ModelError(
                    f"Hailo inference of {self.path.name} failed ({err}): check the device with "
                    "hailortcli fw-control identify"
                ) from None
            return [nms_rows(per_class)]

    def close(self) -> None:
        with self._lock:
            configured, self._configured = self._configured, None
            if configured is not None:
                configured.shutdown()
            vdevice, self._vdevice = self._vdevice, None
            if vdevice is not None:
                vdevice.release()
