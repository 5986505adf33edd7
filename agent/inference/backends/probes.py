"""Availability probes for the vendor runtimes: is the SDK importable, is there a device to run on.

The TensorRT and Hailo backends start their ``available()`` with these, then look for the device
itself (a CUDA GPU; a Hailo device whose driver matches the library). Each SDK is imported inside its
probe: a missing one is an answer, never an ImportError.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

TENSORRT_HINT = (
    "on Jetson install JetPack's python3-libnvinfer (sudo apt install python3-libnvinfer), "
    "on x86 with an NVIDIA GPU pip install 'fieldtui[tensorrt]'"
)
HAILO_HINT = (
    "install the HailoRT wheel matching the device's driver (hailortcli fw-control identify), "
    "from the Hailo Developer Zone; it is not on PyPI"
)


def _import(module: str) -> tuple[Any | None, str]:
    """The module, or None and "" when it is simply absent / a short cause when it is broken."""
    try:
        return importlib.import_module(module), ""
    except ModuleNotFoundError as err:
        if err.name == module:
            return None, ""
        return None, f" ({err})"
    except Exception as err:  # a broken vendor wheel raises more than ImportError (OSError on a .so)
        return None, f" ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"


def _version(mod: Any, dist: str) -> str | None:
    version = getattr(mod, "__version__", None)
    if version:
        return str(version)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def probe_tensorrt() -> tuple[bool, str, str | None]:
    """(importable, reason, version) for the TensorRT Python API."""
    trt, why = _import("tensorrt")
    if trt is None:
        return False, f"tensorrt not importable{why}: {TENSORRT_HINT}", None
    version = _version(trt, "tensorrt")
    return True, f"TensorRT {version or '(unknown version)'} importable", version


def probe_hailo() -> tuple[bool, str, str | None]:
    """(importable and a device found, reason, version) for HailoRT's ``hailo_platform``."""
    hailo, why = _import("hailo_platform")
    if hailo is None:
        return False, f"hailo_platform not importable{why}: {HAILO_HINT}", None
    version = _version(hailo, "hailort")
    try:
        devices = list(hailo.Device.scan())
    except Exception as err:  # HailoRTException when the PCIe driver is missing or mismatched
        return (
            False,
            f"HailoRT {version} cannot scan for devices ({err}): check the hailort driver (hailortcli scan)",
            version,
        )
    if not devices:
        return (
            False,
            f"HailoRT {version} found no Hailo device: check the module is seated and /dev/hailo0 exists",
            version,
        )
    return True, f"HailoRT {version}, device(s): {', '.join(str(d) for d in devices)}", version
