"""Engine fingerprints: read, write and compare what an engine was built with against this device.

A TensorRT plan deserialises only on the TensorRT version and GPU it was built for, and a HEF only on
the Hailo arch it was compiled for; loading one anyway fails deep inside the runtime with a message no
technician can act on. So every engine carries ``fingerprint.json`` beside it, and every load compares
it with what this device has *before* touching the runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.core.errors import ModelError
from fieldtui.protocol import EngineFingerprint, RuntimeIdentity

FINGERPRINT = "fingerprint.json"


class StaleEngine(ModelError):
    """An engine built for another runtime version or accelerator: rebuild it (409, not the file's fault)."""

    status = 409


def fingerprint_path(engine: Path) -> Path:
    return engine.parent / FINGERPRINT


def read_fingerprint(engine: Path) -> EngineFingerprint | None:
    """The fingerprint beside ``engine``, or None when there is none (a bare engine pushed by hand)."""
    path = fingerprint_path(engine)
    try:
        return EngineFingerprint.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ModelError(
            f"{path.name} beside {engine.name} is unreadable ({err}); rebuild the engine"
        ) from None


def write_fingerprint(engine: Path, fingerprint: EngineFingerprint) -> None:
    """Write ``fingerprint.json`` beside ``engine`` (caller renames the directory into place)."""
    fingerprint_path(engine).write_text(json.dumps(fingerprint.model_dump(mode="json"), indent=2) + "\n")


def _short(version: str | None) -> str:
    # "4.20.0" -> "4.20": a HailoRT release line.
    if not version:
        return "an unknown version"
    return ".".join(version.split(".")[:2])


def _parts(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def version_difference(built: EngineFingerprint, here: str) -> str | None:
    """None when an engine built with ``built.runtime_version`` loads in runtime version ``here``; else
    the clause that says what this device has.

    - TensorRT: a plan deserialises only in the exact TensorRT version that built it (a patch release
      too: 10.3.0 plans do not load in 10.3.1), unless it was built with
      ``BuilderFlag.VERSION_COMPATIBLE`` (TensorRT 8.6 and later), which then loads in the same or any
      later version through the lean runtime it carries, never an older one (NVIDIA TensorRT
      Developer Guide, "Version Compatibility").
    - HailoRT: a HEF is not tied to a library build. HailoRT refuses a HEF compiled for another device
      architecture (HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE, status 93) and one whose format its release
      does not support (HAILO_HEF_NOT_SUPPORTED, status 92: "make sure the DFC version is compatible");
      Hailo pairs each Dataflow Compiler with a HailoRT release line (hailort.h status codes; the
      Hailo Model Zoo publishes HEFs per release). So a HEF is judged by arch (below) and release
      line; the library must equal the PCIe driver exactly, which agent/inference/backends/hailo.py checks.
    - ONNX Runtime: an optimised or quantised graph saved here is compared by release line.
    """
    have = built.runtime_version
    if not have or not here:
        return None
    if built.runtime == "tensorrt":
        if built.version_compatible:
            if _parts(here) >= _parts(have):
                return None
            return (
                f"this device has the older {here} (a version-compatible plan loads only in later versions)"
            )
        return None if here == have else f"this device has {here}"
    return None if _short(have) == _short(here) else f"this device has {_short(here)}"


def stale_reason(built: EngineFingerprint, here: RuntimeIdentity) -> str | None:
    """None when an engine with fingerprint ``built`` can load on a device offering ``here``; otherwise
    one line saying what differs, e.g. "built with TensorRT 10.3.0.26 for Orin sm_87; this device has
    10.3.1.5: rebuild it"."""
    if built.runtime != here.runtime:
        return f"built for {built.runtime}, not {here.runtime}"
    name = {"tensorrt": "TensorRT", "hailo": "HailoRT", "onnxruntime": "ONNX Runtime"}.get(
        built.runtime, built.runtime
    )
    diffs = []
    version = version_difference(built, here.runtime_version or "")
    if version:
        diffs.append(version)
    if here.device and built.device and built.device != here.device:
        diffs.append(f"this device is {here.device}")
    if here.compute and built.compute and built.compute != here.compute:
        diffs.append(f"this device has {here.compute}")
    if not diffs:
        return None
    target = " ".join(x for x in (built.device, built.compute) if x) or "another device"
    shown = built.runtime_version if built.runtime == "tensorrt" else _short(built.runtime_version)
    hint = ""
    if built.runtime == "tensorrt" and not built.version_compatible and version:
        hint = " (--version-compatible keeps the next one loading after a TensorRT upgrade)"
    return f"built with {name} {shown or 'an unknown version'} for {target}; {', '.join(diffs)}: rebuild it{hint}"
