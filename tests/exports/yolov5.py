"""A small detector with the original YOLOv5 head, exported to ONNX by torch: output ``[1, 3*A, 5+nc]``.

The ``ultralytics`` package exports ``yolov5nu`` with the anchor-free v8 head, so the layout every
YOLOv5 repository export has (three anchors per cell, objectness, sigmoid-decoded boxes in the graph)
is made here: a five-convolution backbone feeding YOLOv5's ``Detect`` as ultralytics/yolov5
``models/yolo.py`` computes it at inference (grid offsets ``2*sigmoid - 0.5``, sizes
``(2*sigmoid)^2 * anchor``, default COCO anchors). Weights are random (seeded); the objectness bias is
calibrated on the frames (about 60 cells per frame above 0.7, a steep fall below): a few hundred
boxes per frame after NMS, overlapping across classes. Metadata as YOLOv5's
``export.py`` writes it (``stride``, ``names``). Needs torch (the ``test-data`` extra).
"""

from __future__ import annotations

import math
from pathlib import Path

ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))  # pixels
STRIDES = (8, 16, 32)
NC = 80
CANDIDATES_PER_FRAME = 60


def build(seed: int = 5):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Detect(nn.Module):
        """YOLOv5's Detect at inference, as models/yolo.py has it (export mode: one output tensor)."""

        def __init__(self, channels: tuple[int, ...]) -> None:
            super().__init__()
            self.na, self.no, self.nl = 3, NC + 5, len(channels)
            self.register_buffer("anchors", torch.tensor(ANCHORS, dtype=torch.float32).view(self.nl, -1, 2))
            self.stride = STRIDES
            self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)

        def forward(self, xs):
            z = []
            for i, x in enumerate(xs):
                x = self.m[i](x)
                bs, _, ny, nx = x.shape
                x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
                yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
                grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2).float() - 0.5
                anchor_grid = self.anchors[i].view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
                xy, wh, conf = x.sigmoid().split((2, 2, NC + 1), 4)
                xy = (xy * 2 + grid) * self.stride[i]
                wh = (wh * 2) ** 2 * anchor_grid
                z.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * nx * ny, self.no))
            return torch.cat(z, 1)

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = (3, 16, 32, 64, 128, 256)
            self.stages = nn.ModuleList(
                nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.SiLU())
                for a, b in zip(widths, widths[1:], strict=False)
            )
            self.detect = Detect(widths[3:])

        def forward(self, x):
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            return self.detect(feats[2:])

    model = Tiny()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def calibrate(model, batch) -> None:
    """BatchNorm statistics from the frames, then box and class weights damped (sizes near the anchors,
    class scores near 0.5) and the objectness logit mapped so about CANDIDATES_PER_FRAME cells per frame
    are above 0.7."""
    import torch
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(batch)
        model.eval()
        for conv in model.detect.m:  # box sizes near their anchors, class scores near 0.5; objectness spread
            rows = conv.weight.view(3, NC + 5, -1)
            rows[:, :4] *= 0.25
            rows[:, 5:] *= 0.25
        out = model(batch)
        obj = out[..., 4].clamp(1e-6, 1 - 1e-6)
        logits = torch.log(obj / (1 - obj)).flatten()
        ranked = torch.topk(logits, 10 * CANDIDATES_PER_FRAME * len(batch)).values
        q_top, q_tail = float(ranked[CANDIDATES_PER_FRAME * len(batch) - 1]), float(ranked[-1])
        # An affine map of the objectness logit: the top CANDIDATES_PER_FRAME cells per frame above 0.7,
        # all but ten times as many below 0.3, so objectness x class (about 0.5) is seldom near 0.25.
        gain = 2 * math.log(0.7 / 0.3) / max(q_top - q_tail, 1e-6)
        for conv in model.detect.m:
            conv.weight.view(3, NC + 5, -1)[:, 4] *= gain
            bias = conv.bias.view(3, NC + 5)
            bias[:, 4] = bias[:, 4] * gain + math.log(0.7 / 0.3) - gain * q_top


def export(path: Path, batch, imgsz: int = 320) -> Path:
    import onnx
    import torch

    model = build()
    calibrate(model, batch)
    torch.onnx.export(
        model, torch.zeros(1, 3, imgsz, imgsz), str(path), input_names=["images"], output_names=["output0"],
        opset_version=17, dynamo=False,
    )  # fmt: skip
    proto = onnx.load(str(path))
    for key, value in {
        "stride": str(max(STRIDES)),
        "names": str({i: f"class{i}" for i in range(NC)}),
    }.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))
    return path
