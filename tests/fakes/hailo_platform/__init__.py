"""FAKE ``hailo_platform`` (HailoRT's Python API), for tests only: not Hailo's code, no Hailo device.

Implements the surface agent/inference/backends/hailo.py calls, with HailoRT's names: ``Device.scan()``,
``Device(...).control.identify()`` (board info: device architecture, firmware version),
``VDevice().create_infer_model(hef_path)`` and the InferModel API (``input()/output()``,
``set_format_type``, ``configure()``, ``create_bindings()``, ``set_buffer``, ``run([bindings], timeout)``,
``get_buffer()`` giving HAILO_NMS_BY_CLASS output as a list of per-class ``(n, 5)`` arrays of
``[y_min, x_min, y_max, x_max, score]`` normalised to the input size).

What is fake: a "HEF" (written by :func:`make_hef`, the fake's stand-in for Hailo's Dataflow Compiler)
is a JSON header plus an ONNX detector's bytes; "on-chip NMS" runs that detector with ONNX Runtime on
the input buffer and the fake's own per-class NMS (hailo_platform/_infer.py), independent of the agent's
decoding, so a test that compares the two checks the agent's parsing against another producer.

Test knobs (module attributes): ``__version__`` (the library), ``FAKE_DRIVER_VERSION`` (the PCIe driver;
``FIELDTUI_FAKE_HAILO_DRIVER`` in the environment overrides it), ``FAKE_FIRMWARE_VERSION``,
``FAKE_ARCH``, ``FAKE_DEVICES``. A driver version other than the library's makes every device access
fail the way HailoRT does (HAILO_INVALID_DRIVER_VERSION, status 76).
"""

from __future__ import annotations

import ast
import enum
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

__version__ = "4.20.0"
FAKE_DRIVER_VERSION: str | None = None  # None: same as the library
FAKE_FIRMWARE_VERSION: str | None = None  # None: same as the library
FAKE_ARCH = "HAILO8L"
FAKE_DEVICES = ["0000:01:00.0"]
HEF_MAGIC = b"FAKE-HAILO-HEF\n"


class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class FormatType(enum.IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(enum.IntEnum):
    NHWC = 1
    HAILO_NMS_BY_CLASS = 22
    HAILO_NMS_BY_SCORE = 23


class DeviceArchitectureTypes(enum.IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2
    HAILO15H = 3

    def __str__(self) -> str:
        return self.name


def _driver_version() -> str:
    return os.environ.get("FIELDTUI_FAKE_HAILO_DRIVER") or FAKE_DRIVER_VERSION or __version__


def _check_driver() -> None:
    driver = _driver_version()
    if driver != __version__:
        # What libhailort logs, then the status the Python wrapper turns into an exception.
        print(f"[HailoRT] [error] CHECK failed - Driver version ({driver}) is different from library "
              f"version ({__version__})", file=sys.stderr)  # fmt: skip
        print(
            "[HailoRT] [error] Driver version mismatch, status HAILO_INVALID_DRIVER_VERSION(76)",
            file=sys.stderr,
        )
        raise HailoRTException("libhailort failed with error: 76 (HAILO_INVALID_DRIVER_VERSION)")


class HailoFirmwareVersion:
    def __init__(self, version: str) -> None:
        self.major, self.minor, self.revision = (int(p) for p in version.split("."))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.revision} (release,app)"


class _Control:
    def identify(self) -> SimpleNamespace:
        """Board information, as ``hailortcli fw-control identify`` prints it."""
        _check_driver()
        arch = DeviceArchitectureTypes[FAKE_ARCH]
        return SimpleNamespace(
            protocol_version=2,
            firmware_version=HailoFirmwareVersion(FAKE_FIRMWARE_VERSION or __version__),
            logger_version=0,
            board_name="Hailo-8L" if arch == DeviceArchitectureTypes.HAILO8L else "Hailo-8",
            is_release=True,
            device_architecture=arch,
            serial_number="FAKE0001",
            part_number="HM21LB1C2LAE",
            product_name="HAILO-8L AI ACC M.2 B+M KEY MODULE EXT TMP (fake)",
        )


class Device:
    """A physical device, for control (identify) only; inference goes through :class:`VDevice`."""

    @classmethod
    def scan(cls) -> list[str]:
        _check_driver()
        return list(FAKE_DEVICES)

    def __init__(self, device_id: str | None = None) -> None:
        ids = Device.scan()
        if not ids:
            raise HailoRTException("HailoRT device not found in the system")
        self.device_id = device_id or ids[0]
        self.control = _Control()

    def release(self) -> None:
        pass

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False


class HEF:
    """A compiled model: here the fake header and the embedded ONNX detector."""

    def __init__(self, hef_source: str | bytes) -> None:
        data = Path(hef_source).read_bytes() if isinstance(hef_source, str) else bytes(hef_source)
        if not data.startswith(HEF_MAGIC):
            raise HailoRTInvalidHEFException("Invalid HEF. See hailort.log for more information")
        head, _, self.onnx = data[len(HEF_MAGIC) :].partition(b"\n")
        self.header: dict[str, Any] = json.loads(head)
        self._path = hef_source if isinstance(hef_source, str) else None

    @property
    def path(self) -> str | None:
        return self._path

    def get_network_group_names(self) -> list[str]:
        return [self.header["network"]]

    def get_input_vstream_infos(self, name: str | None = None) -> list[SimpleNamespace]:
        i = self.header["input"]
        return [SimpleNamespace(name=i["name"], shape=tuple(i["shape"]))]

    def get_output_vstream_infos(self, name: str | None = None) -> list[SimpleNamespace]:
        o = self.header["output"]
        nms = SimpleNamespace(number_of_classes=o["classes"], max_bboxes_per_class=o["max_bboxes_per_class"])
        return [SimpleNamespace(name=o["name"], shape=(), nms_shape=nms)]


class VDevice:
    """A virtual device over the physical ones; ``create_infer_model`` loads a HEF on it."""

    @staticmethod
    def create_params() -> SimpleNamespace:
        return SimpleNamespace(scheduling_algorithm=None, device_ids=None)

    def __init__(self, params: Any = None) -> None:
        if not Device.scan():
            raise HailoRTException("libhailort failed with error: 3 (HAILO_OUT_OF_PHYSICAL_DEVICES)")
        self.released = False

    def create_infer_model(self, hef_source: str, name: str = "") -> Any:
        from hailo_platform._infer import InferModel

        return InferModel(HEF(hef_source), hef_source)

    def release(self) -> None:
        self.released = True

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: object) -> bool:
        self.release()
        return False


def make_hef(onnx_path: Path, out: Path, *, arch: str = "HAILO8L", max_bboxes_per_class: int = 100,
             score_threshold: float = 0.2, iou_threshold: float = 0.7) -> Path:  # fmt: skip
    """FAKE-only "compiler": wrap an ONNX YOLOv8-layout detector as a fake HEF with on-chip NMS."""
    import onnx

    model = onnx.load(str(onnx_path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    names = {p.key: p.value for p in model.metadata_props}.get("names", "{}")
    header = {
        "arch": arch,
        "network": Path(onnx_path).stem,
        "input": {"name": f"{Path(onnx_path).stem}/input_layer1", "shape": [dims[2], dims[3], dims[1]]},
        "output": {
            "name": f"{Path(onnx_path).stem}/yolov8_nms_postprocess",
            "classes": len(ast.literal_eval(names)) or 80,
            "max_bboxes_per_class": max_bboxes_per_class,
            "score_threshold": score_threshold,
            "iou_threshold": iou_threshold,
        },
    }
    out.write_bytes(HEF_MAGIC + json.dumps(header).encode() + b"\n" + Path(onnx_path).read_bytes())
    return out
