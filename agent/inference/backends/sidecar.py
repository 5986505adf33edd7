"""The source model's metadata beside an engine (``metadata.json``).

A TensorRT plan or a HEF does not carry the ONNX model's metadata map (class names, ``imgsz``, task),
so a build copies it into ``metadata.json`` next to the engine file, in the same directory as
``fingerprint.json``, and the backend reads it back at load. Without it the Detector falls back to a
labels file beside the engine, then to ``class_N``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

METADATA = "metadata.json"

log = logging.getLogger("fieldtui.agent.backends")


def metadata_path(engine: Path) -> Path:
    return Path(engine).parent / METADATA


def onnx_metadata(onnx_path: Path) -> dict[str, str]:
    """The ONNX model's ``metadata_props`` as a dict (weights are not loaded)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def write_metadata(engine: Path, metadata: dict[str, str]) -> None:
    metadata_path(engine).write_text(json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n")


def read_metadata(engine: Path) -> dict[str, str]:
    """The map written at build time; {} when there is none or it is unreadable (names then come from
    a labels file), so a hand-pushed engine still loads."""
    path = metadata_path(engine)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("%s beside %s is unreadable (%s); class names fall back to a labels file", path.name,
                    Path(engine).name, err)  # fmt: skip
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}
