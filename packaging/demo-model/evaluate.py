"""Score an exported demo model on held-out ``demo:`` frames, clean and under each camera fault.

Precision and recall at IoU 0.5 and confidence 0.25 (greedy matching per class, most confident
detection first), through the agent's own Detector (letterbox, ONNX Runtime, class-aware NMS at 0.7),
and the mean confidence of what the model still detects when the frame is blurred, darkened or
covered: what the agent's ``model_confidence_avg`` reports. No torch: tests/test_demo_model.py uses it.

    python packaging/demo-model/evaluate.py [MODEL] [--frames 200] [--first-seed 10000]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np

from agent.frames.sources.demo import CLASSES, MIN_VISIBLE, DemoScene
from agent.inference.agreement import IOU_MATCH as MATCH_IOU
from agent.inference.agreement import iou_matrix
from agent.inference.detector import Detector

FAULTS = ("blur", "dark", "cover")


def labels(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    truth: list[tuple[int, float, float, float, float]],
    optional: list[tuple[int, float, float, float, float]] = (),
) -> tuple[np.ndarray, int]:
    """What each of one frame's detections is: 1 right, 0 wrong, -1 neither; and how many shapes went
    unfound.

    Detections are taken most confident first; each claims the unclaimed ground-truth box of its class
    it overlaps most, if that IoU is at least 0.5, and is a false positive otherwise, unless it
    matches an ``optional`` shape (one less than half in view: finding it is neither right nor wrong,
    as with the "ignore" regions of pedestrian benchmarks).
    """
    gt = np.array([t[1:] for t in truth], np.float32).reshape(-1, 4)
    gt_cls = np.array([t[0] for t in truth], np.int64)
    opt = np.array([t[1:] for t in optional], np.float32).reshape(-1, 4)
    opt_cls = np.array([t[0] for t in optional], np.int64)
    claimed = np.zeros(len(gt), bool)
    out = np.zeros(len(scores), np.int64)
    for i in np.argsort(-scores, kind="stable"):
        cand = np.flatnonzero((gt_cls == class_ids[i]) & ~claimed)
        ious = iou_matrix(boxes[i : i + 1], gt[cand])[0] if len(cand) else np.zeros(0)
        if len(ious) and ious.max() >= MATCH_IOU:
            claimed[cand[int(ious.argmax())]] = True
            out[i] = 1
        elif (iou_matrix(boxes[i : i + 1], opt[opt_cls == class_ids[i]]) >= MATCH_IOU).any():
            out[i] = -1
    return out, int((~claimed).sum())


def match(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    truth: list[tuple[int, float, float, float, float]],
    optional: list[tuple[int, float, float, float, float]] = (),
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one frame's detections (see labels)."""
    kinds, missed = labels(boxes, scores, class_ids, truth, optional)
    return int((kinds == 1).sum()), int((kinds == 0).sum()), missed


def held_out_frame(seed: int) -> tuple[DemoScene, np.ndarray, list, list]:
    """One 640x480 frame of scene ``seed`` (no training seed is below 10**6): the scene, the frame, its
    ground truth and its optional shapes (drawn, but less than half in view)."""
    scene = DemoScene(640, 480, seed)
    frame, annotations = scene.render_annotated(float(np.random.default_rng(seed).uniform(0, 600)))
    truth = [(a.class_id, *a.box) for a in annotations if a.visible >= MIN_VISIBLE]
    optional = [(a.class_id, *a.box) for a in annotations if 0 < a.visible < MIN_VISIBLE]
    return scene, frame, truth, optional


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    strict_fp: int = 0  # false positives when shapes less than half in view count as nothing to find
    per_class: np.ndarray = field(default_factory=lambda: np.zeros((len(CLASSES), 3), np.int64))
    confidences: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ("clean", *FAULTS)})

    @property
    def precision(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    @property
    def strict_precision(self) -> float:
        return self.tp / max(1, self.tp + self.strict_fp)

    @property
    def recall(self) -> float:
        return self.tp / max(1, self.tp + self.fn)

    def mean_confidence(self, kind: str) -> float:
        values = self.confidences[kind]
        return float(np.mean(values)) if values else 0.0


def evaluate(detector: Detector, seeds: range, faults: bool = True) -> Score:
    score = Score()
    for seed in seeds:
        scene, frame, truth, optional = held_out_frame(seed)
        det = detector.detect(frame)
        tp, fp, fn = match(det.boxes, det.scores, det.class_ids, truth, optional)
        score.tp, score.fp, score.fn = score.tp + tp, score.fp + fp, score.fn + fn
        score.strict_fp += match(det.boxes, det.scores, det.class_ids, truth)[1]
        for k in range(len(CLASSES)):
            sel = det.class_ids == k
            mine = [[t for t in shapes if t[0] == k] for shapes in (truth, optional)]
            score.per_class[k] += match(det.boxes[sel], det.scores[sel], det.class_ids[sel], *mine)
        score.confidences["clean"] += det.scores.tolist()
        for kind in FAULTS if faults else ():
            score.confidences[kind] += detector.detect(scene.apply_fault(frame, kind)).scores.tolist()
    return score


def report(score: Score, frames: int) -> None:
    print(f"held-out frames: {frames}  TP {score.tp}  FP {score.fp}  FN {score.fn}")
    print(f"precision {score.precision:.4f}  recall {score.recall:.4f}  (IoU {MATCH_IOU}, conf 0.25)")
    print(f"precision {score.strict_precision:.4f} if shapes less than half in view must not be found")
    for k, name in enumerate(CLASSES):
        tp, fp, fn = score.per_class[k]
        print(f"  {name:<9} precision {tp / max(1, tp + fp):.3f}  recall {tp / max(1, tp + fn):.3f}")
    for kind, values in score.confidences.items():
        print(f"  {kind:<6} detections {len(values):4d}  mean confidence {score.mean_confidence(kind):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="ONNX file (default: agent/assets/demo.onnx)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=10_000)
    args = parser.parse_args()
    with Detector.load(args.model, threads=2) as detector:
        report(evaluate(detector, range(args.first_seed, args.first_seed + args.frames)), args.frames)
