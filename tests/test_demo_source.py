"""The ``demo:`` synthetic camera: a deterministic scene, honest ground truth, faults that look like faults."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agent.core.errors import SourceError
from agent.frames.sources.demo import (
    CLASSES,
    LAST_FAULT_SECONDS,
    DemoScene,
    Fault,
    fault_at,
    open_demo,
    parse_faults,
)


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _sharpness(frame: np.ndarray) -> float:
    return float(cv2.Laplacian(_gray(frame), cv2.CV_64F).var())


# --- the scene ---------------------------------------------------------------------------------------


def test_render_is_deterministic_in_seed_and_time():
    a, truth_a = DemoScene(seed=5).render(12.5)
    b, truth_b = DemoScene(seed=5).render(12.5)
    assert a.dtype == np.uint8 and a.shape == (480, 640, 3)
    assert np.array_equal(a, b) and truth_a == truth_b
    later, _ = DemoScene(seed=5).render(13.0)
    other, _ = DemoScene(seed=6).render(12.5)
    assert not np.array_equal(a, later)
    assert not np.array_equal(a, other)


def test_shapes_move_and_background_changes_slowly():
    scene = DemoScene(seed=3)
    _, first = scene.render(0.0)
    _, moved = scene.render(2.0)
    assert first and moved and first != moved
    # Far from the shapes the background barely changes within a frame time but does over a minute.
    a, b, c = (scene.render(t)[0].astype(np.float32) for t in (10.0, 10.033, 70.0))
    assert np.abs(cv2.blur(a - b, (31, 31))).mean() < np.abs(cv2.blur(a - c, (31, 31))).mean()


@pytest.mark.parametrize("size", [(640, 480), (320, 240), (1280, 720), (480, 640)])
def test_ground_truth_lies_inside_the_frame(size):
    w, h = size
    seen_classes = set()
    for seed in range(6):
        scene = DemoScene(w, h, seed)
        for t in (0.0, 41.9, 300.0):
            frame, truth = scene.render(t)
            assert frame.shape == (h, w, 3)
            for cls, x1, y1, x2, y2 in truth:
                assert 0 <= cls < len(CLASSES)
                assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
                seen_classes.add(cls)
    assert seen_classes == set(range(len(CLASSES)))


def test_ground_truth_boxes_hold_the_drawn_shapes():
    # The box of each ground-truth shape differs from the same place in a frame where it is gone: a
    # shape is really drawn there. Compare with a seed whose scene is different.
    for seed in range(6):
        frame, truth = DemoScene(seed=seed).render(20.0)
        for _, x1, y1, x2, y2 in truth:
            patch = frame[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1].astype(np.float32)
            edge = cv2.Laplacian(cv2.cvtColor(patch.astype(np.uint8), cv2.COLOR_BGR2GRAY), cv2.CV_64F)
            assert np.abs(edge).max() > 20  # a shape edge inside every box


def test_shapes_partly_out_of_view_are_reported_as_visible_fractions():
    fractions = []
    for seed in range(15):
        _, annotations = DemoScene(seed=seed).render_annotated(float(seed) * 13.0)
        fractions += [a.visible for a in annotations]
    fractions = np.array(fractions)
    assert ((fractions >= 0) & (fractions <= 1)).all()
    assert (fractions > 0.95).mean() > 0.5  # most shapes are whole
    assert ((fractions > 0.05) & (fractions < 0.9)).any()  # some cut by the edge or another shape


# --- faults ------------------------------------------------------------------------------------------


def test_parse_faults_defaults_and_explicit_ends():
    faults = parse_faults("blur@20,dark@40,freeze@60,cover@80")
    assert faults == [
        Fault("blur", 20, 40),
        Fault("dark", 40, 60),
        Fault("freeze", 60, 80),
        Fault("cover", 80, 80 + LAST_FAULT_SECONDS),
    ]
    assert parse_faults(" cover@5 , BLUR@1.5-3 ") == [
        Fault("blur", 1.5, 3),
        Fault("cover", 5, 5 + LAST_FAULT_SECONDS),
    ]
    assert parse_faults("") == []


def test_fault_at_picks_the_fault_in_effect():
    faults = parse_faults("blur@10-100,dark@20-30")
    assert fault_at(faults, 5) is None
    assert fault_at(faults, 15).kind == "blur"
    assert fault_at(faults, 25).kind == "dark"  # the later one wins while both are on
    assert fault_at(faults, 30).kind == "blur"
    assert fault_at(faults, 100) is None


@pytest.mark.parametrize(
    "spec", ["smoke@10", "blur", "blur@", "blur@soon", "blur@30-20", "blur@-5", "dark@5-x", "blur@nan"]
)
def test_bad_fault_specs_say_the_accepted_form(spec):
    with pytest.raises(SourceError) as err:
        parse_faults(spec)
    message = str(err.value)
    assert spec.split("@")[0] in message or "times" in message
    assert "kind@start" in message or ">= 0" in message


@pytest.fixture(scope="module")
def clean():
    scene = DemoScene(seed=1)
    return scene, scene.render(33.0)[0]


def test_dark_lowers_brightness(clean):
    scene, frame = clean
    dark = scene.apply_fault(frame, "dark")
    assert _gray(dark).mean() < 0.15 * _gray(frame).mean()
    half = scene.apply_fault(frame, "dark", strength=0.5)
    assert _gray(dark).mean() < _gray(half).mean() < _gray(frame).mean()


def test_blur_lowers_sharpness(clean):
    scene, frame = clean
    blurred = scene.apply_fault(frame, "blur")
    assert _sharpness(blurred) < 0.05 * _sharpness(frame)
    assert abs(_gray(blurred).mean() - _gray(frame).mean()) < 10  # same light, just out of focus


def test_cover_flattens_the_frame(clean):
    scene, frame = clean
    covered = scene.apply_fault(frame, "cover")
    assert _gray(covered).mean() < 40
    assert _gray(covered).std() < 0.15 * _gray(frame).std()
    assert _sharpness(covered) < 0.01 * _sharpness(frame)
    # Darkness alone keeps the picture's structure; a cover does not.
    assert _gray(covered).std() < _gray(scene.apply_fault(frame, "dark")).std()


def test_fault_strength_zero_is_the_clean_frame_and_bad_kinds_are_refused(clean):
    scene, frame = clean
    for kind in ("blur", "dark", "cover"):
        assert np.array_equal(scene.apply_fault(frame, kind, strength=0.0), frame)
    with pytest.raises(SourceError, match="freeze"):
        scene.apply_fault(frame, "freeze")
    with pytest.raises(SourceError, match="unknown demo fault"):
        scene.apply_fault(frame, "fog")


# --- the source --------------------------------------------------------------------------------------


def test_open_demo_parses_the_uri():
    src = open_demo("demo:")
    assert (src.kind, src.live, src.size, src.fps, src.faults) == ("demo", True, (640, 480), 30.0, [])
    src = open_demo("demo:?faults=blur@1,cover@4-6&fps=15&seed=3&size=320x240")
    assert src.size == (320, 240) and src.fps == 15.0 and src.scene.seed == 3
    assert src.faults == [Fault("blur", 1, 4), Fault("cover", 4, 6)]


@pytest.mark.parametrize(
    "uri, needle",
    [
        ("demo:?fps=fast", "fps"),
        ("demo:?size=big", "size"),
        ("demo:?seed=1.5", "seed"),
        ("demo:?fps=0", "fps"),
        ("demo:?fps=inf", "fps"),
        ("demo:?size=8x8", "size"),
        ("demo:?colour=red", "colour"),
        ("demo:?faults=fog@3", "fog"),
        ("demo:scene", "after '?'"),
        ("camera:", "not a demo source"),
    ],
)
def test_bad_demo_uris_say_what_to_write(uri, needle):
    with pytest.raises(SourceError) as err:
        open_demo(uri)
    assert needle in str(err.value)


def test_source_paces_frames_and_counts_them():
    src = open_demo("demo:?fps=40&size=320x240")
    with pytest.raises(SourceError, match="open"):
        src.read()
    with src:
        frames = [src.read() for _ in range(8)]
    assert [f.index for f in frames] == list(range(8))
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    stamps = [f.ts for f in frames]
    assert stamps == sorted(stamps)
    # Paced, not free-running: eight frames at 40 fps span at least 7/40 s (a slow machine only adds).
    assert stamps[-1] - stamps[0] >= 0.9 * 7 / 40
    assert not np.array_equal(frames[0].image, frames[-1].image)  # the scene moves
    with pytest.raises(SourceError):
        src.read()  # closed


def test_source_applies_faults_by_time():
    with open_demo("demo:?faults=dark@0&fps=100&size=320x240") as src:
        frame = src.read()
        assert src.last_fault == "dark"
        assert _gray(frame.image).mean() < 30
        assert src.last_truth  # the shapes are still there, just hard to see


def test_freeze_repeats_the_last_frame():
    with open_demo("demo:?faults=freeze@0.15-30&fps=100&size=320x240") as src:
        before, frozen = [], []
        while len(frozen) < 5:
            frame = src.read()
            (frozen if src.last_fault == "freeze" else before).append(frame)
    assert before, "the first frames come before the freeze"
    assert not np.array_equal(before[0].image, before[-1].image) or len(before) == 1
    for f in frozen:
        assert np.array_equal(f.image, before[-1].image)
    assert [f.index for f in before + frozen] == list(range(len(before) + len(frozen)))
