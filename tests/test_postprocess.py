"""Layouts, decoding and NMS on hand-made outputs with known boxes."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.errors import ModelError
from agent.inference.postprocess import (
    Detections,
    OutputLayout,
    anchor_count,
    detect_layout,
    nms,
    postprocess,
)
from agent.inference.preprocess import Letterbox
from tests.modelgen import end2end_output, yolov5_output, yolov8_output

IDENTITY = Letterbox(ratio=1.0, pad=(0.0, 0.0), shape=(640, 640), new_shape=(640, 640))
V8 = OutputLayout("yolov8", 80)


def reference_nms(boxes, scores, class_ids, iou_thr, max_det):
    """Textbook greedy NMS, one box at a time, per class."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            if class_ids[i] != class_ids[j]:
                continue
            ix1, iy1 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            ix2, iy2 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0.0, ix2 - ix1) * max(0.0, iy2 - iy1)
            area_i = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            area_j = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (area_i + area_j - inter) > iou_thr:
                ok = False
                break
        if ok:
            keep.append(i)
        if len(keep) == max_det:
            break
    return keep


@pytest.mark.parametrize(
    ("seed", "n", "nc", "iou"), [(0, 40, 1, 0.7), (1, 300, 3, 0.7), (2, 500, 1, 0.5), (3, 150, 20, 0.45)]
)
def test_nms_equals_textbook_greedy(seed, n, nc, iou):
    rng = np.random.default_rng(seed)
    # Clusters of jittered boxes so that suppression chains (A kills B, B would have killed C) occur.
    centres = rng.uniform(50, 590, (max(1, n // 12), 2))
    pick = rng.integers(0, len(centres), n)
    wh = rng.uniform(20, 120, (n, 2))
    xy = centres[pick] + rng.normal(0, 12, (n, 2))
    boxes = np.hstack((xy - wh / 2, xy + wh / 2)).astype(np.float32)
    scores = rng.uniform(0.25, 1.0, n).astype(np.float32)
    class_ids = rng.integers(0, nc, n)
    kept = nms(boxes, scores, class_ids, iou, 300)
    expected = reference_nms(boxes.tolist(), scores.tolist(), class_ids.tolist(), iou, 300)
    assert kept.tolist() == expected
    assert len(kept) < n  # the clusters really did overlap


def test_nms_chain_a_suppressed_box_suppresses_nothing():
    # A overlaps B, B overlaps C, A does not overlap C: greedy keeps A and C.
    boxes = np.array([[0, 0, 100, 100], [10, 0, 110, 100], [20, 0, 120, 100]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, np.zeros(3, np.int64), 0.75, 300).tolist() == [0, 2]


def test_nms_keeps_other_classes_and_honours_max_det():
    boxes = np.array([[0, 0, 100, 100], [2, 2, 102, 102], [1, 1, 101, 101], [300, 300, 350, 350]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    class_ids = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, class_ids, 0.7, 300).tolist() == [0, 2, 3]
    assert nms(boxes, scores, class_ids, 0.7, 2).tolist() == [0, 2]
    assert nms(boxes[:0], scores[:0], class_ids[:0], 0.7, 300).tolist() == []


def test_yolov8_overlapping_same_class_suppressed_other_class_kept():
    out = yolov8_output(
        [
            (200, 200, 100, 100, 0, 0.90),
            (203, 201, 100, 100, 0, 0.80),  # same class, IoU ~0.94: suppressed
            (200, 200, 100, 100, 5, 0.70),  # same place, other class: kept
            (500, 500, 60, 40, 2, 0.26),  # just above conf
            (100, 500, 60, 40, 2, 0.24),  # just below conf
        ],
        nc=80,
    )
    det = postprocess([out], V8, IDENTITY)
    assert det.class_ids.tolist() == [0, 5, 2]
    assert np.allclose(det.scores, [0.9, 0.7, 0.26])
    assert np.allclose(det.boxes, [[150, 150, 250, 250], [150, 150, 250, 250], [470, 480, 530, 520]])
    assert det.boxes.dtype == np.float32 and det.class_ids.dtype == np.int64


def test_conf_threshold_and_max_det():
    dets = [(40 + 60 * i, 300, 50, 50, i % 3, 0.3 + 0.01 * i) for i in range(10)]  # disjoint boxes
    out = yolov8_output(dets, nc=3)
    layout = OutputLayout("yolov8", 3)
    assert len(postprocess([out], layout, IDENTITY)) == 10
    assert len(postprocess([out], layout, IDENTITY, conf=0.345)) == 5
    top3 = postprocess([out], layout, IDENTITY, max_det=3)
    assert np.allclose(top3.scores, [0.39, 0.38, 0.37])
    assert len(postprocess([out], layout, IDENTITY, conf=0.99)) == 0


def test_transposed_yolov8_gives_the_same_detections():
    dets = [(200, 200, 100, 100, 1, 0.9), (400, 300, 80, 60, 0, 0.5)]
    plain = postprocess([yolov8_output(dets, nc=2)], OutputLayout("yolov8", 2), IDENTITY)
    flipped = postprocess(
        [yolov8_output(dets, nc=2, transposed=True)], OutputLayout("yolov8", 2, transposed=True), IDENTITY
    )
    assert len(plain) == 2
    assert np.array_equal(plain.boxes, flipped.boxes)
    assert np.array_equal(plain.class_ids, flipped.class_ids)


def test_fp16_output_is_decoded():
    out = yolov8_output([(200, 200, 100, 100, 1, 0.9)], nc=2, dtype=np.float16)
    det = postprocess([out], OutputLayout("yolov8", 2), IDENTITY)
    assert det.class_ids.tolist() == [1]
    assert np.allclose(det.boxes, [[150, 150, 250, 250]])


def test_yolov5_score_is_objectness_times_class():
    out = yolov5_output(
        [
            (200, 200, 100, 100, 0.9, 1, 0.5),  # 0.45: kept
            (202, 200, 100, 100, 0.8, 1, 0.5),  # 0.40, overlaps the first: suppressed
            (500, 500, 50, 50, 0.6, 0, 0.4),  # 0.24: below conf although obj and cls are above
            (100, 500, 50, 50, 0.2, 0, 1.0),  # objectness below conf: dropped first
        ],
        nc=2,
    )
    det = postprocess([out], OutputLayout("yolov5", 2), IDENTITY)
    assert det.class_ids.tolist() == [1]
    assert np.allclose(det.scores, [0.45])
    assert np.allclose(det.boxes, [[150, 150, 250, 250]])


def test_end2end_is_filtered_not_suppressed():
    rows = [
        (10, 10, 110, 110, 0.9, 3),
        (12, 12, 112, 112, 0.8, 3),  # overlapping, but NMS is the model's business
        (300, 300, 400, 400, 0.2, 1),  # below conf
    ]
    det = postprocess([end2end_output(rows)], OutputLayout("end2end", 0), IDENTITY)
    assert det.class_ids.tolist() == [3, 3]
    assert np.allclose(det.boxes, [[10, 10, 110, 110], [12, 12, 112, 112]])
    assert len(postprocess([end2end_output(rows)], OutputLayout("end2end", 0), IDENTITY, max_det=1)) == 1


def test_boxes_come_back_in_original_pixels():
    # 1280x720 -> 640: ratio 0.5, 140 px of padding on top.
    lb = Letterbox(ratio=0.5, pad=(0.0, 140.0), shape=(720, 1280), new_shape=(640, 640))
    out = yolov8_output([(200, 240, 100, 100, 0, 0.9), (620, 160, 60, 60, 1, 0.8)], nc=2)
    det = postprocess([out], OutputLayout("yolov8", 2), lb)
    assert np.allclose(det.boxes[0], [300, 100, 500, 300])
    assert np.allclose(det.boxes[1], [1180, 0, 1280, 100])  # clipped at the right and top edges


def test_to_protocol_names_and_fallback():
    det = Detections(
        boxes=np.array([[1.04, 2.0, 3.0, 4.0], [5, 6, 7, 8]], np.float32),
        scores=np.array([0.91234, 0.5], np.float32),
        class_ids=np.array([0, 7]),
    )
    out = det.to_protocol({0: "person"})
    assert [(d.class_id, d.class_name) for d in out] == [(0, "person"), (7, "class_7")]
    assert out[0].box == [1.0, 2.0, 3.0, 4.0] and out[0].confidence == pytest.approx(0.9123)
    assert len(Detections.empty()) == 0 and Detections.empty().to_protocol({}) == []


A640 = anchor_count((640, 640))


@pytest.mark.parametrize(
    ("shape", "nc", "end2end", "expected"),
    [
        ((1, 84, 8400), 80, None, OutputLayout("yolov8", 80)),
        ((1, 84, 8400), None, None, OutputLayout("yolov8", 80)),  # no names: the smaller dim is 4+nc
        ((1, 8400, 84), 80, None, OutputLayout("yolov8", 80, transposed=True)),
        ((1, 8400, 84), None, None, OutputLayout("yolov8", 80, transposed=True)),
        ((1, 6, 8400), 2, None, OutputLayout("yolov8", 2)),
        ((1, 8400, 6), 2, None, OutputLayout("yolov8", 2, transposed=True)),  # not end2end: N = anchors
        ((1, 8400, 6), None, None, OutputLayout("yolov8", 2, transposed=True)),
        ((1, 5, 8400), 1, None, OutputLayout("yolov8", 1)),
        ((1, 300, 6), 80, None, OutputLayout("end2end", 80)),
        ((1, 300, 6), None, None, OutputLayout("end2end", 0)),
        ((1, 300, 6), 1, True, OutputLayout("end2end", 1)),
        ((1, 25200, 85), 80, None, OutputLayout("yolov5", 80)),
        ((1, 25200, 85), None, None, OutputLayout("yolov5", 80)),
        ((1, 25200, 6), 1, None, OutputLayout("yolov5", 1)),  # one class: N = 3 x anchors decides
        ((1, 25200, 6), None, None, OutputLayout("yolov5", 1)),
        ((1, 1000, 6), 1, False, OutputLayout("yolov5", 1)),  # odd anchor count: metadata says not e2e
        ((1, 84, 8400), 3, None, OutputLayout("yolov8", 80)),  # names disagree: the shape wins
    ],
)
def test_layout_detection(shape, nc, end2end, expected):
    assert A640 == 8400
    assert detect_layout([shape], (640, 640), nc, end2end=end2end) == expected


A320 = anchor_count((320, 320))


@pytest.mark.parametrize(
    ("shape", "nc", "end2end", "nms", "expected"),
    [
        # Ultralytics nms=True: [1,300,6] with end2end=False; it was read as a 2-class raw head.
        ((1, 300, 6), 80, False, True, OutputLayout("end2end", 80)),
        ((1, 300, 6), None, False, True, OutputLayout("end2end", 0)),
        ((1, 300, 6), 2, False, True, OutputLayout("end2end", 2)),  # 2 classes: still boxes after NMS
        ((1, 84, A320), 80, False, False, OutputLayout("yolov8", 80)),  # nms=False: the raw head
        ((1, 300, 6), 80, True, False, OutputLayout("end2end", 80)),  # YOLOv10 / YOLO26 end-to-end
        ((1, A320, 6), 2, False, False, OutputLayout("yolov8", 2, transposed=True)),
    ],
)
def test_layout_from_shape_and_export_metadata(shape, nc, end2end, nms, expected):
    assert detect_layout([shape], (320, 320), nc, end2end=end2end, nms=nms) == expected


@pytest.mark.parametrize(
    ("shape", "nc", "end2end", "nms", "why"),
    [
        ((1, 300, 6), 80, False, None, "80 class names but 6 values per row and 300 rows"),
        ((1, 84, A320), 80, False, True, "the metadata says nms=True"),
        ((1, 84, A320), 80, True, None, "the metadata says end2end=True"),
    ],
)
def test_ambiguous_or_contradicting_layouts_are_refused_with_the_reason(shape, nc, end2end, nms, why):
    with pytest.raises(ModelError) as err:
        detect_layout([shape], (320, 320), nc, end2end=end2end, nms=nms)
    message = str(err.value)
    assert why in message
    assert "[" + ",".join(map(str, shape)) + "]" in message


@pytest.mark.parametrize(
    "shapes", [[(1, 1000)], [(1, 3, 4)], [(1, 4, 8400)], [(2, 84, 8400)], [(1, 3, 80, 80)], []]
)
def test_non_detector_outputs_are_refused_with_the_shapes_found(shapes):
    with pytest.raises(ModelError) as err:
        detect_layout(shapes, (640, 640), None)
    message = str(err.value)
    assert "understood layouts" in message and "[1,4+nc,N]" in message
    for shape in shapes:
        assert "[" + ",".join(map(str, shape)) + "]" in message
