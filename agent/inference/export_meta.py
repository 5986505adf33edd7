"""What an exporter wrote about a model: Ultralytics' ONNX metadata, read once and typed.

Ultralytics stores every value with ``str()``: ``imgsz`` is ``"[320, 320]"``, ``names`` and ``args`` are
Python dict reprs, booleans are ``"True"``/``"False"``. Which keys exist depends on the version:
``end2end`` (YOLOv10/YOLO26 heads) is recent, and whether NMS was baked into the graph (``nms=True``) is
in ``args`` (``{'nms': True, 'dynamic': False, ...}``) and, in newer releases, a top-level ``nms`` too.
The layout decision needs all of them together with the output shape: ``[1,300,6]`` from ``nms=True``
with ``end2end=False`` is boxes after NMS, not a two-class raw head (agent/inference/postprocess.py).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


def _literal(value: str | None) -> object:
    if value is None:
        return None
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)) and value:  # stride is sometimes a list of per-level strides
        value = max(value) if all(isinstance(v, (int, float)) for v in value) else None
    if isinstance(value, (int, float)) and value > 0 and float(value).is_integer():
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """The metadata facts the agent acts on; ``None`` wherever the exporter did not say. (Whether a
    model is dynamic, and its batch, are read from its input shape, which a backend reports for sure.)"""

    task: str | None = None
    end2end: bool | None = None
    nms: bool | None = None  # NMS baked into the graph (Ultralytics ``nms=True``)
    imgsz: tuple[int, int] | None = None  # the export size: what a dynamic-size model is fitted into
    stride: int | None = None  # the largest stride: a dynamic-size model's sides are multiples of it

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ExportInfo:
        args = _literal(meta.get("args"))
        args = args if isinstance(args, dict) else {}
        nms = _flag(meta.get("nms"))
        if nms is None:
            nms = _flag(args.get("nms"))
        size = _literal(meta.get("imgsz"))
        imgsz: tuple[int, int] | None = None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            imgsz = (size, size)
        elif isinstance(size, (list, tuple)) and len(size) in (1, 2):
            dims = [_positive_int(d) for d in size]
            if all(dims):
                imgsz = (dims[0], dims[-1])  # type: ignore[assignment]
        task = meta.get("task")
        return cls(
            task=task.strip() if isinstance(task, str) else None,
            end2end=_flag(meta.get("end2end")),
            nms=nms,
            imgsz=imgsz,
            stride=_positive_int(_literal(meta.get("stride"))),
        )
