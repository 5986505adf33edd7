"""Engine fingerprints: read, write and compare what an engine was built with against this device.

A TensorRT plan deserialises only on the TensorRT version and GPU it was built for, and a HEF only on
the Hailo arch it was compiled for; loading one anyway fails deep inside the runtime with a message no
technician can act on. So every engine carries ``fingerprint.json`` beside it, and every load compares
it with what this device has *before* touching the runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.errors import ModelError
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
    # "10.3.0.26" -> "10.3": the technician compares minor versions, TensorRT's compatibility unit.
    if not version:
        return "an unknown version"
    return ".".join(version.split(".")[:2])


def stale_reason(built: EngineFingerprint, here: RuntimeIdentity) -> str | None:
    """None when an engine with fingerprint ``built`` can load on a device offering ``here``; otherwise
    one line saying what differs, e.g. "built with TensorRT 10.3 for sm_87; this device has 10.7"."""
    if built.runtime != here.runtime:
        return f"built for {built.runtime}, not {here.runtime}"
    name = {"tensorrt": "TensorRT", "hailo": "HailoRT", "onnxruntime": "ONNX Runtime"}.get(
        built.runtime, built.runtime
    )
    diffs = []
    if (
        here.runtime_version
        and built.runtime_version
        and _short(built.runtime_version) != _short(here.runtime_version)
    ):
        diffs.append(f"this device has {_short(here.runtime_version)}")
    if here.device and built.device and built.device != here.device:
        diffs.append(f"this device is {here.device}")
    if here.compute and built.compute and built.compute != here.compute:
        diffs.append(f"this device has {here.compute}")
    if not diffs:
        return None
    target = " ".join(x for x in (built.device, built.compute) if x) or "another device"
    return f"built with {name} {_short(built.runtime_version)} for {target}; {', '.join(diffs)}: rebuild it"
