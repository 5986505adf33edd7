"""Calibrate an exported demo model's class scores so a confidence means the chance a detection is right.

The trained network ranks well (a right detection scores 0.96 at the median) but its raw scores are
not probabilities: a duplicate or a look-alike scoring 0.3 is right far less than 30 % of the time, and
the agent's ``model_confidence_avg`` and its 0.60 alert line mean less than they should. Platt scaling
fixes that without touching what the network has learnt: a logistic regression of "this detection is
right" on the class logit, ``p = sigmoid(a * logit + b)``, fitted on frames of *training* scenes
(never the held-out ones the model is scored on) and written into the graph in front of its class
sigmoid. The order of the scores, and so what NMS keeps, is unchanged.

    python packaging/demo-model/calibrate.py MODEL [--frames 400] [--out CALIBRATED]

train.py runs it after export; the fitted ``a``, ``b`` are stored in the metadata (``calibration``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from agent.inference.detector import Detector

# Scenes the calibration sees: inside train.py's TRAIN_SEEDS (1,000,000..1,999,999), far from the
# held-out seeds (0..199 in tests, 10,000.. in evaluate.py).
CALIBRATION_SEEDS = 1_500_000
FIT_CONF = 0.02  # collect detections down to here, so the fit sees the whole low-score tail


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_platt(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """``(a, b)`` maximising the likelihood of ``y`` (0/1) under ``sigmoid(a * x + b)``: Newton's method
    on the two parameters, with Platt's smoothed targets so a perfectly separated tail stays finite."""
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 1.0, 0.0
    design = np.stack([x, np.ones_like(x)], 1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * x + b)))
        grad = design.T @ (p - t)
        hess = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def collect(model: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Class logits of every detection on ``frames`` training-scene frames, and whether each is right.
    Detections of shapes less than half in view are left out: neither right nor wrong."""
    from evaluate import held_out_frame, labels  # a sibling script, as train.py imports net.py

    xs, ys = [], []
    with Detector.load(model, conf=FIT_CONF, threads=2) as detector:
        for seed in range(CALIBRATION_SEEDS, CALIBRATION_SEEDS + frames):
            _, frame, truth, optional = held_out_frame(seed)
            det = detector.detect(frame)
            kinds, _ = labels(det.boxes, det.scores, det.class_ids, truth, optional)
            keep = kinds >= 0
            xs.append(logit(det.scores[keep]))
            ys.append(kinds[keep])
    return np.concatenate(xs), np.concatenate(ys)


def score_sigmoid(graph: onnx.GraphProto) -> onnx.NodeProto:
    """The Sigmoid that makes the class scores: the one feeding the graph output's Concat."""
    out = graph.output[0].name
    concat = next(n for n in graph.node if out in n.output and n.op_type == "Concat")
    sig = [n for n in graph.node if n.op_type == "Sigmoid" and n.output[0] in concat.input]
    if len(sig) != 1:
        raise SystemExit("calibrate.py: no single class-score Sigmoid before the output Concat")
    return sig[0]


def apply(model: Path, out: Path, a: float, b: float, frames: int) -> None:
    """Write ``model`` with ``sigmoid(a * x + b)`` in place of the class scores' ``sigmoid(x)``."""
    proto = onnx.load(str(model))
    graph = proto.graph
    sig = score_sigmoid(graph)
    raw = sig.input[0]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(a, np.float32), "calibration_a"),
            numpy_helper.from_array(np.array(b, np.float32), "calibration_b"),
        ]
    )
    scale = helper.make_node("Mul", [raw, "calibration_a"], ["calibration_scaled"], name="calibration_mul")
    shift = helper.make_node(
        "Add", ["calibration_scaled", "calibration_b"], ["calibration_logit"], name="calibration_add"
    )
    sig.input[0] = "calibration_logit"
    at = list(graph.node).index(sig)
    graph.node.insert(at, shift)
    graph.node.insert(at, scale)
    meta = {p.key: p.value for p in proto.metadata_props}
    if "calibration" in meta:
        raise SystemExit(f"calibrate.py: {model} is already calibrated ({meta['calibration']})")
    meta["calibration"] = f"platt a={a:.4f} b={b:.4f} on {frames} training-scene frames"
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    tmp = out.with_suffix(".calib.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(out)


def calibrate(model: Path, out: Path | None = None, frames: int = 400) -> tuple[float, float]:
    """Fit on ``frames`` training-scene frames and write the calibrated model (in place by default)."""
    x, y = collect(model, frames)
    a, b = fit_platt(x, y)
    apply(model, out or model, a, b, frames)
    print(
        f"calibrated on {len(y)} detections of {frames} training-scene frames ({int(y.sum())} right): "
        f"score = sigmoid({a:.3f} * logit + {b:+.3f})",
        flush=True,
    )
    return a, b


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: rewrite MODEL in place")
    parser.add_argument("--frames", type=int, default=400)
    args = parser.parse_args()
    calibrate(args.model, args.out, args.frames)
