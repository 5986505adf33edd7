"""A loaded detector: preprocess -> backend.infer -> postprocess, with its names, layout and identity.

``Detector.load`` is where a bad model is caught: a missing file, a file that is not ONNX, a model that
is not a detector all become one ModelError line saying what to do. After that, every frame runs the
same three steps; the pipeline calls them from separate threads, so none of them keeps per-frame state.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from agent.core.errors import AgentError, BackendUnavailable, ImageError, ModelError
from agent.inference import postprocess as post
from agent.inference.backends import get_backend
from agent.inference.backends.base import Backend
from agent.inference.export_meta import ExportInfo
from agent.inference.postprocess import Detections, OutputLayout
from agent.inference.preprocess import Letterbox, preprocess
from fieldtui.protocol import DetectResult, ImageResult, ModelInfo

__all__ = ["Detections", "Detector", "demo_model_path", "detect_images", "load_names"]

log = logging.getLogger("fieldtui.agent.detector")

DEFAULT_IMGSZ = 640


def demo_model_path() -> Path:
    """The embedded demo model shipped as package data."""
    return Path(__file__).resolve().parents[1] / "assets" / "demo.onnx"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Streamed: memory stays flat whatever the model size."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _parse_names_metadata(value: str) -> dict[int, str]:
    parsed = ast.literal_eval(value)
    if isinstance(parsed, (list, tuple)):
        parsed = dict(enumerate(parsed))
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError("not a non-empty dict or list")
    return {int(k): str(v) for k, v in parsed.items()}


def labels_file_candidates(model_path: Path) -> list[Path]:
    return [
        model_path.with_suffix(".txt"),
        model_path.parent / "labels.txt",
        model_path.with_suffix(".names"),
    ]


def load_names(metadata: dict[str, str], model_path: Path) -> tuple[dict[int, str] | None, str]:
    """Class names and where they came from: ONNX metadata ``names``, else a labels file beside the
    model (``<model>.txt``, ``labels.txt``, ``<model>.names``; one name per line), else (None, "none")."""
    raw = metadata.get("names")
    if raw is not None:
        try:
            return _parse_names_metadata(raw), "metadata"
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
            log.warning(
                "%s: metadata 'names' is not a Python dict repr (%s); falling back to a labels file",
                model_path.name,
                err,
            )
    for candidate in labels_file_candidates(model_path):
        if not candidate.is_file():
            continue
        try:
            lines = candidate.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            log.warning("%s: cannot read labels file (%s); skipping it", candidate.name, err)
            continue
        if lines:
            return {i: (n.strip() or f"class_{i}") for i, n in enumerate(lines)}, candidate.name
    return None, "none"


def _complete_names(names: dict[int, str] | None, nc: int, model_name: str) -> dict[int, str]:
    if names is None:
        return {i: f"class_{i}" for i in range(nc)}
    if nc and len(names) != nc:
        log.warning(
            "%s: %d class names but the output has %d classes; unnamed ids are shown as class_N",
            model_name,
            len(names),
            nc,
        )
    return {**{i: f"class_{i}" for i in range(nc)}, **names}


def _fixed_hw(shape: tuple[int | str | None, ...]) -> tuple[int, int] | None:
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    return None


def _input_hw(shape: tuple[int | str | None, ...], info: ExportInfo) -> tuple[int, int]:
    # Dynamic axes: Ultralytics records the export size as metadata "imgsz" ("[640, 640]").
    return _fixed_hw(shape) or info.imgsz or (DEFAULT_IMGSZ, DEFAULT_IMGSZ)


def _check_thresholds(conf: float, iou: float, max_det: int) -> None:
    if not 0.0 <= conf <= 1.0:
        raise AgentError(f"--conf must be between 0 and 1, got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise AgentError(f"--iou must be between 0 and 1, got {iou}")
    if max_det < 1:
        raise AgentError(f"max_det must be at least 1, got {max_det}")


class Detector:
    """A detection model ready to run. Build it with :meth:`load`."""

    def __init__(
        self,
        backend: Backend,
        path: Path,
        *,
        sha256: str,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
    ) -> None:
        self.backend = backend
        self.path = path
        self.sha256 = sha256
        self.conf, self.iou, self.max_det = conf, iou, max_det
        meta = backend.metadata
        name = path.name
        info = ExportInfo.from_metadata(meta)
        task = info.task
        if task not in (None, "detect"):
            raise ModelError(f"{name} is a {task} model: the agent runs detection models (task=detect)")
        if len(backend.inputs) != 1:
            raise ModelError(f"{name} has {len(backend.inputs)} inputs: a detector takes one image tensor")
        spec = backend.inputs[0]
        channels = spec.shape[1] if len(spec.shape) == 4 else None
        if len(spec.shape) != 4 or (isinstance(channels, int) and channels != 3):
            raise ModelError(
                f"{name} input {spec.name} has shape {list(spec.shape)}: a detector takes [1,3,H,W] images"
            )
        if spec.dtype not in (np.float32, np.float16):
            raise ModelError(
                f"{name} input {spec.name} is {spec.dtype}: only float32 and float16 are supported"
            )
        batch = spec.shape[0]
        # A model built for a fixed batch of N (an engine or ONNX exported with batch=N) is fed N frames
        # every call: several cameras fill them (agent/frames/multicam.py), and :meth:`infer` pads a
        # call that has fewer frames with copies of its last one and hands back only the real rows.
        self.fixed_batch: int = batch if isinstance(batch, int) and batch > 1 else 1
        h, w = _input_hw(spec.shape, info)
        self.input_shape: tuple[int, int, int, int] = (1, 3, h, w)
        self.input_dtype: np.dtype = spec.dtype
        # A dynamic-size model is fed the way Ultralytics' predictor feeds it: each frame letterboxed
        # into the smallest stride-multiple rectangle within imgsz (192x320 for 1280x720 at 320), not
        # the square. A fixed-size model gets its square.
        self.stride: int | None = None if _fixed_hw(spec.shape) else (info.stride or 32)

        names, names_source = load_names(meta, path)
        shapes = self._probe_output_shapes()
        if self.fixed_batch > 1:
            log.info(
                "%s takes a fixed batch of %d frames: calls with fewer frames are padded (one camera "
                "pays for %d; several cameras fill the batch)",
                name,
                self.fixed_batch,
                self.fixed_batch,
            )
        if self.stride and not self._takes_rectangles():
            log.warning(
                "%s declares a dynamic input size but fails on rectangles: fed %dx%d squares", name, h, w
            )
            self.stride = None
        hint = backend.layout_hint  # e.g. Hailo's on-chip NMS: the backend knows, the shape cannot tell
        if hint is not None and hint[0] == "hailo_nms":
            self.output_layout: OutputLayout = OutputLayout("hailo_nms", hint[1], input_hw=(h, w))
        else:
            self.output_layout = post.detect_layout(
                shapes,
                (h, w),
                nc=(max(names) + 1) if names else None,
                end2end=info.end2end,
                nms=info.nms,
            )
        self.layout: str = self.output_layout.kind
        self.names: dict[int, str] = _complete_names(names, self.output_layout.nc, name)
        log.debug("%s: layout %s, %d names from %s", name, self.layout, len(self.names), names_source)
        self.info = ModelInfo(
            path=str(path),
            sha256=sha256,
            format=type(backend).model_format,
            backend=type(backend).key,
            input_shape=list(self.input_shape),
            input_dtype=str(self.input_dtype),
            layout=self.layout,
            names=self.names,
        )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        backend: str = "onnxruntime",
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        threads: int | None = None,
    ) -> Detector:
        """Load, validate and warm up a model (``None``: the embedded demo model)."""
        _check_thresholds(conf, iou, max_det)
        backend_cls = get_backend(backend)
        ok, reason = backend_cls.available()
        if not ok:
            raise BackendUnavailable(reason)
        if path is None:
            model_path = demo_model_path()
            if not model_path.is_file():
                raise ModelError(
                    "the embedded demo model agent/assets/demo.onnx is missing: reinstall fieldtui "
                    "or pass --model PATH"
                )
        else:
            model_path = Path(path).expanduser()
            if not model_path.exists():
                raise ModelError(f"model file not found: {model_path} (check the path, or pass --model PATH)")
            if not model_path.is_file():
                raise ModelError(f"model path is not a file: {model_path}")
            if model_path.stat().st_size == 0:
                raise ModelError(f"model file is empty: {model_path}; copy it again")
        try:
            sha256 = file_sha256(model_path)
        except OSError as err:
            raise ModelError(f"cannot read model file {model_path}: {err.strerror or err}") from None
        instance = backend_cls(model_path, threads=threads)
        try:
            return cls(instance, model_path, sha256=sha256, conf=conf, iou=iou, max_det=max_det)
        except BaseException:
            instance.close()
            raise

    def _probe_output_shapes(self) -> list[tuple[int, ...]]:
        """Run once on a blank frame: validates that the model really runs, warms it up, and gives
        concrete output shapes even when the file declares dynamic ones."""
        blank = np.full(self.input_shape, 114 / 255, dtype=self.input_dtype)
        try:
            outputs = self.infer(blank)
        except ModelError:
            raise
        except Exception as err:  # the runtime's own exception types; translate them
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise ModelError(
                f"{self.path.name} loads but fails on a {list(self.input_shape)} input ({first}): "
                "re-export it with a fixed input size"
            ) from None
        return [tuple(np.shape(o)) for o in outputs]

    def _takes_rectangles(self) -> bool:
        """Whether a dynamic-size model really runs on the 16:9 stride rectangle it would be fed (some
        exports name their axes dynamic but bake the export size into a reshape)."""
        assert self.stride
        h, w = self.input_shape[2:]
        rect_h = max(self.stride, -(-h * 9 // 16 // self.stride) * self.stride)
        try:
            self.infer(np.full((1, 3, rect_h, w), 114 / 255, dtype=self.input_dtype))
        except Exception:  # the runtime's own exception types: any failure means "not really dynamic"
            return False
        return True

    # --- the per-frame template -------------------------------------------------------------

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        return preprocess(image_bgr, self.input_shape[2:], self.input_dtype, stride=self.stride)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """The backend's outputs for ``tensor`` (one row per frame); a fixed-batch model's call is padded
        to its batch and its outputs cut back to the real frames."""
        want = self.fixed_batch
        if want == 1:
            return self.backend.infer(tensor)
        n = tensor.shape[0]
        if n > want:
            raise ModelError(f"{self.path.name} takes at most {want} frames a call, not {n}")
        if n < want:
            tensor = np.concatenate([tensor, np.repeat(tensor[-1:], want - n, axis=0)])
        outputs = self.backend.infer(tensor)
        if any(np.shape(o)[:1] != (want,) for o in outputs):
            raise ModelError(
                f"{self.path.name} takes a fixed batch of {want} images but its outputs do not have one "
                "row per image; re-export it with batch=1 or dynamic=True"
            )
        return [o[:n] for o in outputs] if n < want else outputs

    def postprocess(self, outputs: list[np.ndarray], lb: Letterbox) -> Detections:
        return post.postprocess(
            outputs, self.output_layout, lb, conf=self.conf, iou=self.iou, max_det=self.max_det
        )

    def detect(self, image_bgr: np.ndarray) -> Detections:
        tensor, lb = self.preprocess(image_bgr)
        return self.postprocess(self.infer(tensor), lb)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_image_path(p: Path) -> None:
    try:
        found = p.exists()
    except OSError as err:  # a name too long for the file system, say
        raise ImageError(f"not a usable image path ({err.strerror or err}): {str(p)[:80]}") from None
    if not found:
        raise ImageError(f"image not found: {p}")
    if not p.is_file():
        raise ImageError(f"not an image file: {p} (pass image files, not a folder)")


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image from a file; ImageError saying what was wrong otherwise."""
    import cv2

    p = Path(path)
    _check_image_path(p)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as err:
        raise ImageError(f"cannot read image {p}: {err.strerror or err}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(f"cannot decode {p} as an image: use a JPEG, PNG, BMP, TIFF or WebP file")
    return image


def detect_images(
    paths: Iterable[str | Path],
    *,
    model: str | Path | None = None,
    backend: str = "onnxruntime",
    conf: float = 0.25,
    iou: float = 0.7,
) -> DetectResult:
    """Run the detector on image files; boxes in each image's own pixels. Fails before printing
    anything if any image is missing or undecodable."""
    paths = [Path(p) for p in paths]
    for p in paths:  # a typo in the last path should not cost a model load first
        _check_image_path(p)
    results = []
    with Detector.load(model, backend=backend, conf=conf, iou=iou) as detector:
        for p in paths:
            detections = detector.detect(read_image(p))
            results.append(ImageResult(image=p.name, detections=detections.to_protocol(detector.names)))
    return DetectResult(results=results)
