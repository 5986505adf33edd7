"""Real Ultralytics LiteRT (.tflite) exports, float32 and INT8, made by Ultralytics' own exporter beside the
ONNX export of the same weights, and what Ultralytics' own predictor detects with each.

Needs the ``test-data`` extra and what Ultralytics' LiteRT export needs (``pip install litert-torch
ai-edge-quantizer``: since Ultralytics 8.4.83 ``format="tflite"`` is ``format="litert"``, converted from
PyTorch by litert-torch and quantised by ai-edge-quantizer; onnx2tf and TensorFlow are no longer used).
Run from the repository root::

    python tests/exports/tflite.py --out /tmp/tflite

YOLOv8n is built from its yaml and re-initialised as tests/exports/make.py does (so its scores mean
something untrained), then exported at imgsz 320: ``yolov8n.onnx``, ``yolov8n_float32.tflite`` and
``yolov8n_int8.tflite`` (static INT8, ``int8=True``, calibrated on demo-scene frames written as a small
dataset, since Ultralytics' default calibration set would be downloaded). ``tflite.json`` holds the
versions, each file's input/output dtypes and Ultralytics' own predictions on make.py's frames at
conf 0.25 and 0.1.
tests/test_ultralytics_tflite.py runs the agent on them. Nothing here is committed: the models are
made fresh each time (about a minute on two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")

from tests.exports.make import CALIBRATION, IMGSZ, frames, reinitialise  # noqa: E402

FAMILY = "yolov8n"
# Ultralytics' default conf, and a lower one: INT8 squeezes this untrained net's scores (its best is
# about 0.27), so at 0.25 almost nothing is left to compare box by box.
CONFS = (0.25, 0.1)


def calibration_dataset(folder: Path, names: dict[int, str]) -> Path:
    """The calibration frames as an Ultralytics dataset (images only; calibration needs no labels)."""
    import cv2

    images = folder / "images" / "val"
    images.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames(CALIBRATION)):
        cv2.imwrite(str(images / f"scene{i:02d}.jpg"), frame)
    yaml = folder / "demo.yaml"
    lines = [f"path: {folder}", "train: images/val", "val: images/val", "names:"]
    yaml.write_text("\n".join(lines + [f"  {k}: {v}" for k, v in names.items()]) + "\n")
    return yaml


def tensor_dtypes(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return {
        "input": [str(d["dtype"].__name__) for d in interp.get_input_details()],
        "output": [str(d["dtype"].__name__) for d in interp.get_output_details()],
        "output_shapes": [[int(x) for x in d["shape"]] for d in interp.get_output_details()],
    }


def predict(path: Path, images, conf: float) -> list[list[dict]]:
    from ultralytics import YOLO

    model = YOLO(str(path), task="detect")
    out = []
    for image in images:
        boxes = model.predict(image, imgsz=IMGSZ, conf=conf, iou=0.7, verbose=False)[0].boxes
        out.append(
            [{"box": [round(float(v), 3) for v in b], "score": round(float(s), 6), "class": int(c)}
             for b, s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True)]
        )  # fmt: skip
    return out


def make(out: Path) -> dict:
    import torch
    import ultralytics
    from ultralytics import YOLO

    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    cwd = Path.cwd()
    os.chdir(work)  # Ultralytics writes beside the model's "file", i.e. the working directory
    try:
        yolo = YOLO(f"{FAMILY}.yaml", task="detect")
        reinitialise(yolo, frames(CALIBRATION))
        data = calibration_dataset(work / "calibration", yolo.model.names)
        made = {
            f"{FAMILY}.onnx": yolo.export(format="onnx", imgsz=IMGSZ, verbose=False),
            f"{FAMILY}_float32.tflite": yolo.export(format="tflite", imgsz=IMGSZ, verbose=False),
            f"{FAMILY}_int8.tflite": yolo.export(
                format="tflite", imgsz=IMGSZ, int8=True, data=str(data), verbose=False
            ),  # fmt: skip
        }
        for name, exported in made.items():
            shutil.move(str(exported), out / name)
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    images = frames()
    facts: dict = {"ultralytics": ultralytics.__version__, "torch": torch.__version__.split("+")[0],
                   "imgsz": IMGSZ, "models": {}}  # fmt: skip
    for name in made:
        facts["models"][name] = {f"detections@{conf}": predict(out / name, images, conf) for conf in CONFS}
        if name.endswith(".tflite"):
            facts["models"][name].update(tensor_dtypes(out / name))
        counts = {c: sum(map(len, facts["models"][name][f"detections@{c}"])) for c in CONFS}
        print(f"{name}: detections by Ultralytics' predictor at conf {counts}")
    try:
        from importlib.metadata import version

        facts["litert_torch"] = version("litert-torch")
    except Exception:
        pass
    (out / "tflite.json").write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the models and tflite.json")
    make(parser.parse_args().out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
