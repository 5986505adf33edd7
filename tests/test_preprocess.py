"""Letterbox and tensor conversion against a reference written straight from Ultralytics' LetterBox."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.inference.preprocess import Letterbox, letterbox, preprocess, to_tensor


def reference_letterbox(img: np.ndarray, new_shape=(640, 640), color=(114, 114, 114), auto=False, stride=32):
    """Ultralytics ``LetterBox(auto=..., scaleup=True, center=True, stride=...)``, as its source reads."""
    shape = img.shape[:2]  # current shape [height, width]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:  # minimum rectangle
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return img, r, (left, top), new_unpad


def reference_tensor(padded: np.ndarray, dtype) -> np.ndarray:
    """Ultralytics' predictor: BGR->RGB, HWC->CHW, batch, float, /255 (then the model's dtype)."""
    chw = np.ascontiguousarray(padded[..., ::-1].transpose(2, 0, 1)[None])
    return (chw.astype(np.float32) / 255).astype(dtype)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


SIZES = [
    ((1080, 1920), (640, 640)),  # 16:9 camera, pad top and bottom
    ((720, 1280), (640, 640)),
    ((480, 640), (640, 640)),
    ((640, 480), (640, 640)),  # portrait: pad left and right
    ((640, 640), (640, 640)),  # no resize, no pad
    ((333, 517), (640, 640)),  # odd sizes: the 0.1 rounding decides which side gets the extra pixel
    ((50, 70), (320, 320)),  # upscale
    ((1080, 1920), (384, 640)),  # rectangular model input
    ((1000, 999), (640, 640)),  # a 1-pixel pad split 0/1
]


@pytest.mark.parametrize(("shape", "new_shape"), SIZES)
def test_letterbox_matches_ultralytics_pixel_for_pixel(shape, new_shape):
    img = textured(*shape)
    padded, lb = letterbox(img, new_shape)
    ref, r, (left, top), (unpad_w, unpad_h) = reference_letterbox(img, new_shape)

    assert padded.shape == (*new_shape, 3)
    assert np.array_equal(padded, ref)
    assert lb.ratio == r
    assert lb.pad == (left, top)
    assert lb.shape == shape
    assert lb.new_shape == new_shape
    # The image sits at (left, top) and the rest is 114 grey.
    inside = np.zeros(new_shape, dtype=bool)
    inside[top : top + unpad_h, left : left + unpad_w] = True
    assert (padded[~inside] == 114).all()


def test_letterbox_accepts_views():
    img = textured(720, 1280)
    view = img[::-1, 100:740]  # flipped and cropped: 720 x 640, negative strides
    padded, _ = letterbox(view, 640)
    assert np.array_equal(padded, reference_letterbox(np.ascontiguousarray(view))[0])


def test_letterbox_pads_a_wide_frame_top_and_bottom_evenly():
    padded, lb = letterbox(textured(1080, 1920), 640)
    assert lb.ratio == pytest.approx(1 / 3)
    assert lb.pad == (0.0, 140.0)
    assert (padded[:140] == 114).all() and (padded[500:] == 114).all()
    assert not (padded[140:500] == 114).all()


@settings(max_examples=40, deadline=None, database=None)
@given(
    h=st.integers(1, 900), w=st.integers(1, 900), target=st.sampled_from([(640, 640), (320, 320), (256, 416)])
)
def test_letterbox_matches_reference_for_any_size(h, w, target):
    r = min(target[0] / h, target[1] / w)
    # Ultralytics itself fails where a side rounds to 0 pixels; that sliver case is tested below.
    assume(round(h * r) >= 1 and round(w * r) >= 1)
    img = textured(h, w, seed=h * 1000 + w)
    padded, lb = letterbox(img, target)
    ref, r, pad, _ = reference_letterbox(img, target)
    assert np.array_equal(padded, ref)
    assert (lb.ratio, lb.pad) == (r, pad)


def test_a_sliver_image_keeps_one_pixel_instead_of_failing():
    # 1 x 640 scaled by 0.5 rounds to 0 rows (Python rounds half to even): keep one row, pad the rest.
    img = textured(1, 640, seed=1)
    padded, lb = letterbox(img, (320, 320))
    assert padded.shape == (320, 320, 3)
    assert lb.ratio == 0.5 and lb.pad == (0.0, 159.0)
    assert (padded[159] != 114).any() and (padded[:159] == 114).all() and (padded[160:] == 114).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(("shape", "new_shape"), SIZES)
def test_tensor_is_rgb_nchw_scaled_in_the_model_dtype(shape, new_shape, dtype):
    img = textured(*shape, seed=3)
    tensor, lb = preprocess(img, new_shape, dtype)
    padded = reference_letterbox(img, new_shape)[0]
    expected = reference_tensor(padded, dtype)

    assert tensor.dtype == dtype
    assert tensor.shape == (1, 3, *new_shape)
    assert tensor.flags.c_contiguous
    assert np.array_equal(tensor, expected)  # the fused path builds the same tensor, value for value
    assert np.array_equal(to_tensor(padded, dtype), expected)
    assert lb == letterbox(img, new_shape)[1]


def test_channel_order_is_rgb():
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 0] = 255  # BGR
    t = to_tensor(blue)
    assert t[0, 2].min() == 1.0 and t[0, 0].max() == 0.0 and t[0, 1].max() == 0.0


def test_tensor_rejects_unsupported_dtypes_and_images():
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(textured(4, 4), np.uint8)
    with pytest.raises(ValueError, match="BGR uint8"):
        letterbox(np.zeros((10, 10), np.uint8), 640)
    with pytest.raises(ValueError, match="float64"):
        preprocess(textured(4, 4), 640, np.float64)


def test_unmap_inverts_the_letterbox_and_clips_to_the_image():
    img = textured(720, 1280)
    _, lb = letterbox(img, 640)
    original = np.array([[100.0, 50.0, 400.0, 300.0], [0.0, 0.0, 1280.0, 720.0]], dtype=np.float32)
    dw, dh = lb.pad
    in_model = original * lb.ratio + np.array([dw, dh, dw, dh], dtype=np.float32)
    assert np.allclose(lb.unmap(in_model), original, atol=1e-3)
    # Boxes spilling into the padding are clipped to the image.
    spilled = np.array([[-20.0, 0.0, 700.0, 640.0]], dtype=np.float32)
    assert np.allclose(lb.unmap(spilled), [[0.0, 0.0, 1280.0, 720.0]])
    assert lb.unmap(np.zeros((0, 4))).shape == (0, 4)


def test_letterbox_is_a_plain_value():
    lb = Letterbox(ratio=0.5, pad=(0.0, 140.0), shape=(720, 1280), new_shape=(640, 640))
    assert lb == Letterbox(0.5, (0.0, 140.0), (720, 1280), (640, 640))


AUTO_SIZES = [
    ((720, 1280), (320, 320), (192, 320)),  # the example: 16:9 at imgsz 320
    ((1080, 1920), (640, 640), (384, 640)),
    ((480, 640), (640, 640), (480, 640)),
    ((640, 480), (320, 320), (320, 256)),  # portrait: pad left and right to a multiple of 32
    ((333, 517), (640, 640), (416, 640)),  # odd: 412 rows padded to 416, 2 above and 2 below
    ((640, 640), (640, 640), (640, 640)),
]


@pytest.mark.parametrize(("shape", "new_shape", "expected"), AUTO_SIZES)
def test_auto_letterbox_matches_ultralytics_for_dynamic_models(shape, new_shape, expected):
    img = textured(*shape)
    padded, lb = letterbox(img, new_shape, stride=32)
    ref = reference_letterbox(img, new_shape, auto=True, stride=32)[0]
    assert padded.shape[:2] == ref.shape[:2] == expected
    assert np.array_equal(padded, ref)
    assert lb.new_shape == expected
    tensor, lb2 = preprocess(img, new_shape, np.float32, stride=32)
    assert lb2 == lb
    assert np.array_equal(tensor, reference_tensor(ref, np.float32))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 900), st.integers(1, 900), st.sampled_from([160, 320, 640]), st.sampled_from([32, 64]))
def test_auto_letterbox_matches_reference_for_any_size(h, w, target, stride):
    img = np.zeros((h, w, 3), np.uint8)
    img[:: max(1, h // 7), :] = 200
    assume(round(h * min(target / h, target / w)) >= 1 and round(w * min(target / h, target / w)) >= 1)
    padded, lb = letterbox(img, target, stride=stride)
    ref = reference_letterbox(img, (target, target), auto=True, stride=stride)[0]
    assert np.array_equal(padded, ref)
    assert (target - padded.shape[0]) % stride == 0 and (target - padded.shape[1]) % stride == 0
