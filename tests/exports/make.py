"""Real Ultralytics ONNX exports, and what Ultralytics' own predictor detects with them.

Needs the ``test-data`` extra (``pip install -e .[test-data]``: ultralytics and torch); nothing of it is
needed to run the agent or the rest of the tests. Run from the repository root::

    python tests/exports/make.py --out /tmp/exports            # models + reference.json in /tmp/exports
    python tests/exports/make.py --out /tmp/exports --update   # ... and refresh tests/exports/reference.json

For every family the installed ultralytics knows (YOLOv8n, YOLO11n, YOLOv10n, YOLO26n), the model is
built from its yaml and re-initialised so its scores mean something without training (a randomly
initialised head gives every anchor the same score, and every comparison would be a tie):

- kaiming-normal convolution weights (seeded; not the DFL's fixed 0..15 projection), box biases 2.0 as Ultralytics' ``bias_init``, class
  biases -3 so only a few anchors pass conf 0.25;
- BatchNorm statistics calibrated on a few demo-scene frames (cumulative average, train mode), so the
  activations stay in range through the depth of the network;
- then, per class, the last class convolution scaled and its bias shifted so that on those frames the
  class logits are centred on -3 and about 80 anchor-class pairs per frame pass conf 0.25: a few dozen
  boxes per frame, with distinct scores.

It is then exported at imgsz 320 four ways: ``raw`` (default: the one-to-many head, NMS left to the
caller), ``e2e`` (``nms=False``: the end-to-end one-to-one head where the model has one), ``nms``
(``nms=True``: NMS inside the graph) and ``dynamic`` (``dynamic=True``: any input size). Each ONNX is
run by Ultralytics' predictor (``YOLO(onnx).predict``) on fixed demo frames; boxes, scores and classes
go to ``reference.json``. Beside them, ``yolov5-v5head.onnx``: the original YOLOv5 head
(tests/exports/yolov5.py), which the test checks against a decoder of its own. tests/test_ultralytics_exports.py runs the agent on the same files and frames
and compares box by box. The models stay out of git (9 MB each); the reference is small and committed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing to download: every model is built from its yaml

YOLOV5 = "yolov5-v5head"  # tests/exports/yolov5.py: the original anchor-based head, made with torch alone
FAMILIES = ("yolov8n", "yolo11n", "yolov10n", "yolo26n", YOLOV5)
VARIANTS = {"raw": {}, "e2e": {"nms": False}, "nms": {"nms": True}, "dynamic": {"dynamic": True}}
IMGSZ = 320
SEED = 15
CLASS_BIAS = -3.0
CANDIDATES_PER_FRAME = 80
# Frames the predictor and the agent both see: (width, height, scene seed, time). 16:9, 4:3, portrait.
FRAMES = (
    (1280, 720, 1, 0.5),
    (1280, 720, 2, 3.0),
    (640, 480, 3, 1.0),
    (480, 640, 4, 2.0),
    (1920, 1080, 5, 4.0),
)
CALIBRATION = tuple((640, 480, 100 + i, 0.7 * i) for i in range(16))
REFERENCE = Path(__file__).resolve().parent / "reference.json"


def frames(specs=FRAMES):
    from agent.frames.sources.demo import DemoScene

    return [DemoScene(w, h, seed=seed).render(t)[0] for w, h, seed, t in specs]


def reinitialise(yolo, calibration) -> None:
    import numpy as np
    import torch
    from torch import nn

    from agent.inference.preprocess import preprocess

    torch.manual_seed(SEED)
    net = yolo.model
    fixed = {id(c) for m in net.modules() if type(m).__name__ == "DFL" for c in m.modules()}  # arange weights
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and id(m) not in fixed:
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    head = net.model[-1]
    for box_name, cls_name in (("cv2", "cv3"), ("one2one_cv2", "one2one_cv3")):
        for box, cls in zip(
            getattr(head, box_name, None) or [], getattr(head, cls_name, None) or [], strict=True
        ):
            nn.init.constant_(box[-1].bias, 2.0)
            nn.init.constant_(cls[-1].bias, CLASS_BIAS)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    batch = np.concatenate([preprocess(f, IMGSZ)[0] for f in calibration])
    net.train()
    with torch.no_grad():
        for chunk in np.array_split(batch, 4):
            net(torch.from_numpy(chunk))
    net.eval()
    # Class logits as the calibration frames make them: per class, standardise what the last class
    # convolution adds to its bias, then scale all of them by one gain chosen so that about
    # CANDIDATES_PER_FRAME anchor-class pairs per calibration frame pass conf 0.25, and centre every
    # class on the -3 bias. Without it a few classes whose weights happen to lean positive fire on
    # thousands of anchors and the predictor's max_det cut-off decides what is compared.
    last_cls = [cls[-1] for name in ("cv3", "one2one_cv3") for cls in (getattr(head, name, None) or [])]
    seen: dict[int, list[torch.Tensor]] = {id(m): [] for m in last_cls}
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen[id(m)].append(o - m.bias[:, None, None]))
        for m in last_cls
    ]
    with torch.no_grad():
        net(torch.from_numpy(batch))
        stats = {}
        for m in last_cls:
            raw = torch.cat(seen[id(m)]).transpose(0, 1).flatten(1)  # [classes, samples], bias excluded
            stats[id(m)] = (raw.mean(dim=1), raw.std(dim=1).clamp_min(1e-6))
        # The one-to-many branch decides for raw exports: the gain is set on it (cv3), used for both.
        z = torch.cat(
            [((torch.cat(seen[id(c[-1])]).transpose(0, 1).flatten(1) - stats[id(c[-1])][0][:, None])
              / stats[id(c[-1])][1][:, None]).flatten() for c in head.cv3]
        )  # fmt: skip
        top = torch.topk(z, CANDIDATES_PER_FRAME * len(calibration)).values[-1]
        gain = (math.log(0.25 / 0.75) - CLASS_BIAS) / float(top)
        for m in last_cls:
            mean, std = stats[id(m)]
            m.weight *= (gain / std)[:, None, None, None]
            m.bias.copy_(CLASS_BIAS - mean * gain / std)
    for h in hooks:
        h.remove()


def predict(onnx_path: Path, images) -> list[list[dict]]:
    from ultralytics import YOLO

    model = YOLO(str(onnx_path), task="detect")
    out = []
    for image in images:
        result = model.predict(image, imgsz=IMGSZ, conf=0.25, iou=0.7, max_det=300, verbose=False)[0]
        boxes = result.boxes
        out.append(
            [
                {"box": [round(float(v), 3) for v in box], "score": round(float(s), 6), "class": int(c)}
                for box, s, c in zip(
                    boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
                )
            ]
        )
    return out


def onnx_facts(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    return {"outputs": dims, "end2end": meta.get("end2end"), "args": meta.get("args")}


def make(out: Path, families=FAMILIES) -> dict:
    import numpy as np
    import torch
    import ultralytics
    from ultralytics import YOLO

    out.mkdir(parents=True, exist_ok=True)
    images, calibration = frames(), frames(CALIBRATION)
    reference: dict = {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__.split("+")[0],
        "imgsz": IMGSZ,
        "frames": [list(f) for f in FRAMES],
        "models": {},
    }
    work = out / "work"
    work.mkdir(exist_ok=True)
    cwd = Path.cwd()
    os.chdir(work)  # Ultralytics writes <yaml stem>.onnx into the working directory
    try:
        for family in (f for f in families if f != YOLOV5):
            try:
                yolo = YOLO(f"{family}.yaml", task="detect")
            except Exception as err:  # an older ultralytics that does not know this family
                print(f"{family}: not known to ultralytics {ultralytics.__version__} ({err}); skipped")
                continue
            reinitialise(yolo, calibration)
            for variant, kwargs in VARIANTS.items():
                exported = Path(yolo.export(format="onnx", imgsz=IMGSZ, verbose=False, **kwargs))
                target = out / f"{family}-{variant}.onnx"
                shutil.move(str(exported), target)
                dets = predict(target, images)
                reference["models"][target.name] = {**onnx_facts(target), "detections": dets}
                print(f"{target.name}: outputs {reference['models'][target.name]['outputs']}, "
                      f"{sum(map(len, dets))} detections on {len(images)} frames")  # fmt: skip
        if (
            YOLOV5 in families
        ):  # the original YOLOv5 head: no Ultralytics predictor reads it, the test decodes it
            from agent.inference.preprocess import preprocess
            from tests.exports import yolov5

            batch = torch.from_numpy(np.concatenate([preprocess(f, IMGSZ)[0] for f in calibration]))
            yolov5.export(out / f"{YOLOV5}.onnx", batch, IMGSZ)
            print(f"{YOLOV5}.onnx: outputs {onnx_facts(out / f'{YOLOV5}.onnx')['outputs']}")
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n", encoding="utf-8")
    return reference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the .onnx files and reference.json"
    )
    parser.add_argument("--families", nargs="+", default=FAMILIES, help="default: %(default)s")
    parser.add_argument("--update", action="store_true", help=f"also write {REFERENCE.relative_to(REPO)}")
    args = parser.parse_args()
    make(args.out, args.families)
    if args.update:
        shutil.copyfile(args.out / "reference.json", REFERENCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
