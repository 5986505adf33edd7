"""The demo detector: a small anchor-free network, its training loss, and the export wrapper.

One output level at stride 8 fed by a tiny feature pyramid (strides 8, 16, 32 merged top-down), so a
shape 12 px wide still gets its own cell while the deepest features see the whole shape and what is
around it. Each cell predicts a box as the offset of the shape's centre from the cell centre plus
exp-scaled width and height (YOLOX style), and one score per class. The class score is trained towards
the IoU of the cell's box with the shape's (quality focal loss), so a confident detection is also a
well-placed one and a degraded image lowers confidence instead of producing sloppy boxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 8


def cbr(c_in: int, c_out: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class ColourEdges(nn.Module):
    """Appends two fixed channels to the RGB input: horizontal and vertical edge strength summed over
    the colour channels (Sobel, absolute). A shape is defined by its outline whatever its colours, and
    handing the network that outline, instead of making it learn colour-agnostic edge detectors from
    scratch, makes it learn the shapes in a fraction of the steps."""

    def __init__(self) -> None:
        super().__init__()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4
        kernel = torch.stack([sobel, sobel.t()] * 3)[:, None]  # (6, 1, 3, 3): dx, dy per channel
        self.register_buffer("kernel", kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grad = F.conv2d(x, self.kernel, padding=1, groups=3).abs()
        dx = grad[:, 0:1] + grad[:, 2:3] + grad[:, 4:5]
        dy = grad[:, 1:2] + grad[:, 3:4] + grad[:, 5:6]
        return torch.cat([x, dx, dy], 1)


class ShapeNet(nn.Module):
    """Raw head output ``(B, 4 + nc, S/8, S/8)``: dx, dy, log w, log h (in strides), class logits."""

    def __init__(self, nc: int, width: tuple[int, ...] = (16, 24, 32, 48, 64), neck: int = 32) -> None:
        super().__init__()
        c0, c1, c2, c3, c4 = width
        self.nc = nc
        self.stem = nn.Sequential(
            ColourEdges(), cbr(5, c0, 2), cbr(c0, c1, 2)
        )  # stride 4: kept thin, it is the costly part
        self.s8 = nn.Sequential(cbr(c1, c2, 2), cbr(c2, c2))
        self.s16 = nn.Sequential(cbr(c2, c3, 2), cbr(c3, c3))
        self.s32 = nn.Sequential(cbr(c3, c4, 2), cbr(c4, c4))
        self.lat32, self.lat16, self.lat8 = cbr(c4, neck, k=1), cbr(c3, neck, k=1), cbr(c2, neck, k=1)
        self.fuse16, self.fuse8 = cbr(neck, neck), cbr(neck, neck)
        # Decoupled head (as in YOLOX): what a shape is and where its edges are want different features,
        # and sharing one branch slows the classification down a lot.
        self.box_head = nn.Sequential(cbr(neck, neck), nn.Conv2d(neck, 4, 1))
        self.cls_head = nn.Sequential(cbr(neck, neck), nn.Conv2d(neck, nc, 1))
        with torch.no_grad():  # start from "no shape here" and boxes about 3 cells wide
            for last in (self.box_head[-1], self.cls_head[-1]):
                nn.init.normal_(last.weight, std=0.01)
            self.box_head[-1].bias.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0]))
            self.cls_head[-1].bias.fill_(-4.6)  # sigmoid = 0.01

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8 = self.s8(self.stem(x))
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p16 = self.fuse16(self.lat16(f16) + F.interpolate(self.lat32(f32), scale_factor=2.0, mode="nearest"))
        p8 = self.fuse8(self.lat8(f8) + F.interpolate(p16, scale_factor=2.0, mode="nearest"))
        return torch.cat([self.box_head(p8), self.cls_head(p8)], 1)


def anchor_points(grid: int, stride: int = STRIDE) -> torch.Tensor:
    """Cell centres ``(grid*grid, 2)`` in input pixels, row-major like the flattened output."""
    r = (torch.arange(grid, dtype=torch.float32) + 0.5) * stride
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def decode(raw: torch.Tensor, anchors: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """``(B, N, 4)`` raw box outputs -> cx, cy, w, h in input pixels."""
    xy = anchors + raw[..., :2] * stride
    wh = torch.exp(raw[..., 2:4].clamp(max=8.0)) * stride
    return torch.cat([xy, wh], -1)


class Exported(nn.Module):
    """The YOLOv8 output contract: ``(1, 4 + nc, N)``, boxes cx,cy,w,h in input pixels, sigmoid scores."""

    def __init__(self, net: ShapeNet, imgsz: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("anchors", anchor_points(imgsz // STRIDE))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(images).flatten(2)  # (B, 4+nc, N)
        xy = self.anchors.t().unsqueeze(0) + out[:, :2] * STRIDE
        wh = torch.exp(out[:, 2:4]) * STRIDE
        return torch.cat([xy, wh, torch.sigmoid(out[:, 4:])], 1)


def box_iou_cxcywh(a: torch.Tensor, b: torch.Tensor, giou: bool = False) -> torch.Tensor:
    """Elementwise IoU (or GIoU) of two ``(..., 4)`` cx,cy,w,h box tensors of the same shape."""
    a1, a2 = a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2
    b1, b2 = b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(min=0).prod(-1)
    union = a[..., 2:].prod(-1) + b[..., 2:].prod(-1) - inter + 1e-9
    iou = inter / union
    if not giou:
        return iou
    hull = (torch.max(a2, b2) - torch.min(a1, b1)).prod(-1) + 1e-9
    return iou - (hull - union) / hull


def assign(
    anchors: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, radius: float = 1.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which ground-truth box each cell learns from.

    A cell learns a box's position when its centre lies inside the box and within ``radius`` strides
    of the box centre (centre sampling); the cell nearest the centre always does, so tiny shapes get
    one, and it alone learns to score the shape. A cell claimed by two boxes learns the smaller one.
    ``gt`` is ``(B, M, 4)`` x1y1x2y2, ``valid`` ``(B, M)``. Returns ``(B, N)`` masks of the cells that
    learn a box and of those that score one, and ``(B, N)`` the index of the box.
    """
    a = anchors[None, :, None, :]  # (1, N, 1, 2)
    lo, hi = gt[:, None, :, :2], gt[:, None, :, 2:]
    centre = (lo + hi) / 2
    inside = ((a > lo) & (a < hi)).all(-1)
    near = ((a - centre).abs() < radius * STRIDE).all(-1)
    nearest = (a - centre).square().sum(-1)  # (B, N, M)
    first = F.one_hot(nearest.argmin(1), anchors.shape[0]).transpose(1, 2).bool() & valid[:, None, :]
    cand = ((inside & near) | first) & valid[:, None, :]
    area = (hi - lo).prod(-1).expand_as(cand)
    area = torch.where(cand, area, torch.full_like(area, float("inf")))
    best = area.argmin(-1)
    pos = cand.any(-1)
    scoring = torch.gather(first, 2, best[..., None]).squeeze(-1) & pos
    return pos, scoring, best


def in_boxes(anchors: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B, N)``: the cell centre is inside any of the valid ``(B, K, 4)`` x1y1x2y2 boxes."""
    a = anchors[None, :, None, :]
    inside = ((a > boxes[:, None, :, :2]) & (a < boxes[:, None, :, 2:])).all(-1)
    return (inside & valid[:, None, :]).any(-1)


def detection_loss(
    out: torch.Tensor,
    anchors: torch.Tensor,
    gt: torch.Tensor,
    gt_cls: torch.Tensor,
    valid: torch.Tensor,
    ignore: torch.Tensor,
    ignore_valid: torch.Tensor,
    box_gain: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Quality focal loss on the class scores plus GIoU loss on the positives' boxes.

    Only the cell nearest a shape's centre learns to score it (towards the IoU of its box, so a
    confident detection is a well-placed one); its neighbours learn the box too but to stay quiet, so
    one shape gives one confident detection, not a cluster that NMS at IoU 0.7 cannot always merge.
    ``ignore`` boxes are shapes mostly hidden: not ground truth, but not background either, so cells on
    them neither learn to fire nor to stay quiet.
    """
    out = out.flatten(2).transpose(1, 2)  # (B, N, 4+nc)
    boxes = decode(out[..., :4], anchors)
    logits = out[..., 4:]
    pos, scoring, idx = assign(anchors, gt, valid)
    tgt_xyxy = torch.gather(gt, 1, idx[..., None].expand(-1, -1, 4))
    tgt = torch.cat([(tgt_xyxy[..., :2] + tgt_xyxy[..., 2:]) / 2, tgt_xyxy[..., 2:] - tgt_xyxy[..., :2]], -1)
    tgt_cls = torch.gather(gt_cls, 1, idx)
    n_pos = pos.sum().clamp(min=1).float()
    n_shapes = scoring.sum().clamp(min=1).float()

    giou = box_iou_cxcywh(boxes[pos], tgt[pos], giou=True)
    box_loss = (1 - giou).sum() / n_pos
    iou = torch.zeros_like(logits[..., 0])
    iou[pos] = box_iou_cxcywh(boxes[pos], tgt[pos]).detach().clamp(min=0)

    score_tgt = torch.zeros_like(logits)
    score_tgt[scoring, tgt_cls[scoring]] = iou[scoring]
    # A neighbour of the centre cell that sits almost as close to the centre is let off lightly: which
    # of two cells is nearest is a coin toss when the centre lies on their border.
    d2 = ((anchors - tgt[..., :2]) / STRIDE).square().sum(-1)
    weight = torch.where(pos & ~scoring, 1 - torch.exp(-2 * d2), torch.ones_like(d2))
    weight = weight * (~(in_boxes(anchors, ignore, ignore_valid) & ~pos)).float()
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, score_tgt, reduction="none")
    # Focal modulation only where nothing is to be scored, where a thousand easy negatives would drown
    # the rest; at a shape's centre every class gets the full BCE, so the right one is pushed up and the
    # wrong ones down from the first steps.
    modulation = torch.where(scoring[..., None], torch.ones_like(prob), prob.pow(2))
    cls_loss = (bce * modulation * weight[..., None]).sum() / n_shapes
    loss = cls_loss + box_gain * box_loss
    iou = iou[scoring]
    stats = {"cls": cls_loss.item(), "box": box_loss.item(), "iou": iou.mean().item() if len(iou) else 0.0}
    return loss, stats
