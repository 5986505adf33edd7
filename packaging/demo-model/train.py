"""Train the demo detector on ``demo:`` scenes and export it as agent/assets/demo.onnx.

    pip install -e '.[train]'
    python packaging/demo-model/train.py            # train, calibrate, export, evaluate (about 15 min on 2 cores)
    python packaging/demo-model/evaluate.py         # score the committed model (no torch needed)

Every training frame is rendered on the fly from a scene seed in TRAIN_SEEDS; evaluation and the tests
use seeds below that range, so no evaluated frame was ever seen in training. The run is deterministic
for a given --seed and thread count.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate import calibrate  # noqa: E402
from evaluate import evaluate, report  # noqa: E402
from net import STRIDE, Exported, ShapeNet, anchor_points, detection_loss  # noqa: E402

from agent.frames.sources.demo import CLASSES, MIN_VISIBLE, DemoScene  # noqa: E402
from agent.inference.detector import Detector  # noqa: E402
from agent.inference.preprocess import letterbox, to_tensor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TRAIN_SEEDS = (1_000_000, 2_000_000)  # scene seeds used for training; everything below is held out
EVAL_SEEDS = 10_000  # train.py's own held-out evaluation: seeds 10_000.. (the tests use 0..199)
FRAMES_PER_SCENE = 2  # frames per training scene: more, and a batch learns "this colour is that class"
# More shapes per frame than the demo shows: twice the class and box examples for the same compute.
SHAPES = (6, 14)
# Frame sizes seen in training, with weights: mostly the demo default, plus 16:9, square and portrait
# so the letterbox padding and the shapes' scale in the input vary.
SIZES = [((640, 480), 0.6), ((960, 540), 0.15), ((480, 480), 0.1), ((480, 640), 0.1), ((320, 240), 0.05)]


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """Letterboxed BGR uint8 images -> the float NCHW batch the agent's preprocess would feed the model."""
    return torch.from_numpy(np.concatenate([to_tensor(im) for im in images]))


class Batches(torch.utils.data.IterableDataset):
    """An endless stream of training batches rendered from random training scenes.

    Read through a one-worker DataLoader, so rendering overlaps the training step; one worker keeps the
    stream, and so the run, deterministic.
    """

    def __init__(self, imgsz: int, batch: int, seed: int) -> None:
        self.imgsz, self.batch = imgsz, batch
        self.rng = np.random.default_rng(seed)
        self.queue: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def _scene_frames(self) -> None:
        sizes, weights = zip(*SIZES, strict=True)
        w, h = sizes[self.rng.choice(len(sizes), p=weights)]
        scene = DemoScene(w, h, int(self.rng.integers(*TRAIN_SEEDS)), shapes=SHAPES)
        for t in self.rng.uniform(0, 900, FRAMES_PER_SCENE):
            frame, annotations = scene.render_annotated(float(t))
            image, lb = letterbox(frame, self.imgsz)
            dw, dh = lb.pad
            boxes = np.array([a.box for a in annotations], np.float32).reshape(-1, 4) * lb.ratio + (
                dw,
                dh,
                dw,
                dh,
            )
            vis = np.array([a.visible for a in annotations], np.float32)
            cls = np.array([a.class_id for a in annotations], np.int64)
            truth = vis >= MIN_VISIBLE
            # Shapes just under the ground-truth cut are neither shapes nor background to the loss.
            unsure = ~truth & (vis > 0.3)
            self.queue.append((image, boxes[truth], cls[truth], boxes[unsure]))
        order = self.rng.permutation(len(self.queue))
        self.queue = [self.queue[i] for i in order]

    def __iter__(self) -> Batches:
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        # Keep several scenes mixed in the queue so one batch is not eight frames of the same scene.
        while len(self.queue) < 4 * self.batch:
            self._scene_frames()
        items, self.queue = self.queue[: self.batch], self.queue[self.batch :]
        m = max(1, max(len(it[1]) for it in items))
        k = max(1, max(len(it[3]) for it in items))
        gt = torch.zeros(self.batch, m, 4)
        gt_cls = torch.zeros(self.batch, m, dtype=torch.long)
        valid = torch.zeros(self.batch, m, dtype=torch.bool)
        ignore = torch.zeros(self.batch, k, 4)
        ignore_valid = torch.zeros(self.batch, k, dtype=torch.bool)
        for i, (_, boxes, cls, unsure) in enumerate(items):
            gt[i, : len(boxes)] = torch.from_numpy(boxes)
            gt_cls[i, : len(cls)] = torch.from_numpy(cls)
            valid[i, : len(boxes)] = True
            ignore[i, : len(unsure)] = torch.from_numpy(unsure)
            ignore_valid[i, : len(unsure)] = True
        return to_batch([it[0] for it in items]), gt, gt_cls, valid, ignore, ignore_valid


def train(args: argparse.Namespace) -> ShapeNet:
    torch.manual_seed(args.seed)
    net = ShapeNet(len(CLASSES))
    ema = ShapeNet(len(CLASSES))
    ema.load_state_dict(net.state_dict())
    ema.eval()
    n_params = sum(p.numel() for p in net.parameters())
    print(f"ShapeNet: {n_params:,} parameters, input {args.imgsz}, stride {STRIDE}", flush=True)
    decay, no_decay = [], []
    for p in net.parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}], lr=args.lr
    )
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine down to 2 % of the peak
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    anchors = anchor_points(args.imgsz // STRIDE)
    batches = iter(
        torch.utils.data.DataLoader(
            Batches(args.imgsz, args.batch, args.seed), batch_size=None, num_workers=1, prefetch_factor=4
        )
    )
    start = time.monotonic()
    data_time = 0.0
    for step in range(args.steps):
        t0 = time.monotonic()
        images, gt, gt_cls, valid, ignore, ignore_valid = next(batches)
        data_time += time.monotonic() - t0
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        net.train()
        loss, parts = detection_loss(net(images), anchors, gt, gt_cls, valid, ignore, ignore_valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        # Exponential moving average of the weights (and BatchNorm statistics): a steadier final model.
        d = min(0.998, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.state_dict().values(), net.state_dict().values(), strict=True):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(p.detach(), alpha=1 - d)
                else:
                    e.copy_(p)
        if step % 50 == 0 or step == args.steps - 1:
            elapsed = time.monotonic() - start
            print(
                f"step {step:4d}/{args.steps}  loss {loss.item():.3f}  cls {parts['cls']:.3f}  "
                f"box {parts['box']:.3f}  iou {parts['iou']:.2f}  lr {lr_at(step):.2e}  "
                f"{elapsed:.0f}s (data {data_time:.0f}s)",
                flush=True,
            )
    print(f"trained in {time.monotonic() - start:.0f} s", flush=True)
    return ema


def export(net: ShapeNet, imgsz: int, path: Path) -> None:
    """ONNX with the YOLOv8 contract and Ultralytics-style metadata."""
    model = Exported(net.eval(), imgsz).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, imgsz, imgsz),),
            str(tmp),
            input_names=["images"],
            output_names=["output0"],
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    meta = {
        "author": "fieldtui",
        "description": "fieldtui demo detector: shapes of the demo: source (packaging/demo-model)",
        "license": "Apache-2.0",
        "task": "detect",
        "stride": str(STRIDE),
        "imgsz": str([imgsz, imgsz]),
        "names": str(dict(enumerate(CLASSES))),
        "batch": "1",
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "fieldtui packaging/demo-model/train.py"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    tmp.unlink()
    print(f"exported {path} ({path.stat().st_size / 1024:.0f} KiB)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "agent" / "assets" / "demo.onnx")
    parser.add_argument("--imgsz", type=int, default=256, help=f"input size, a multiple of {4 * STRIDE}")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-frames", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    export(train(args), args.imgsz, args.out)
    calibrate(args.out)
    with Detector.load(args.out, threads=args.threads) as detector:
        report(evaluate(detector, range(EVAL_SEEDS, EVAL_SEEDS + args.eval_frames)), args.eval_frames)
