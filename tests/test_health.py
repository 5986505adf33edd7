"""Camera health on demo-scene frames: each fault moves the figure a technician would look at."""

from __future__ import annotations

import numpy as np
import pytest

from agent.frames.health import HealthMonitor
from agent.frames.sources.demo import DemoScene


@pytest.fixture(scope="module")
def scene() -> DemoScene:
    return DemoScene(640, 480, seed=3)


def warmed(scene: DemoScene, *, live: bool = True, seconds: float = 3.0) -> tuple[HealthMonitor, float]:
    """A monitor that has seen ``seconds`` of clean frames (6 measurements a second)."""
    mon = HealthMonitor(live=live, every=1)
    t = 0.0
    while t < seconds:
        health = mon.assess(scene.render(t)[0], t)
        t += 1 / 6
    assert health.ok, health.reasons
    assert mon.baseline is not None
    return mon, t


def test_clean_frames_are_healthy(scene: DemoScene) -> None:
    mon, t = warmed(scene)
    health = mon.assess(scene.render(t)[0], t)
    assert health.ok and health.reasons == []
    assert 60 < health.brightness < 200
    assert health.sharpness_ratio is not None and 0.5 < health.sharpness_ratio < 2.5
    assert not health.frozen and not health.covered


def test_blur_drops_sharpness_against_the_baseline(scene: DemoScene) -> None:
    mon, t = warmed(scene)
    clean = mon.assess(scene.render(t)[0], t)
    blurred = mon.assess(scene.apply_fault(scene.render(t + 0.2)[0], "blur"), t + 0.2)
    assert blurred.sharpness < clean.sharpness / 5
    assert blurred.sharpness_ratio is not None and blurred.sharpness_ratio < 0.5
    assert not blurred.ok
    assert any(r.startswith("sharpness down") and "lens dirty or out of focus" in r for r in blurred.reasons)
    # Blurred frames never become the baseline: a long blur stays a blur.
    for k in range(30):
        ts = t + 0.4 + k / 6
        later = mon.assess(scene.apply_fault(scene.render(ts)[0], "blur"), ts)
    assert later.sharpness_ratio is not None and later.sharpness_ratio < 0.5


def test_dark_drops_brightness_and_says_so(scene: DemoScene) -> None:
    mon, t = warmed(scene)
    clean = mon.assess(scene.render(t)[0], t)
    dark = mon.assess(scene.apply_fault(scene.render(t + 0.2)[0], "dark"), t + 0.2)
    assert dark.brightness < clean.brightness / 4
    assert not dark.ok and not dark.covered  # dim, but the scene is still there
    assert any(r.startswith(f"image very dark (brightness {dark.brightness:.0f})") for r in dark.reasons)


def test_cover_is_dark_and_featureless(scene: DemoScene) -> None:
    mon, t = warmed(scene)
    covered = mon.assess(scene.apply_fault(scene.render(t)[0], "cover"), t)
    assert covered.covered and not covered.ok
    assert covered.brightness < 40
    assert any("lens covered" in r for r in covered.reasons)


def test_frozen_after_two_seconds_on_a_live_source_only(scene: DemoScene) -> None:
    for live in (True, False):
        mon, t = warmed(scene, live=live)
        still = scene.render(t)[0]
        states = [mon.assess(still.copy(), t + k * 0.25) for k in range(12)]  # 2.75 s of one picture
        frozen = [h.frozen for h in states]
        if live:
            assert frozen[:8] == [False] * 8  # under 2 s: a still scene is not a stuck camera yet
            assert all(frozen[8:])
            assert any(
                r.startswith("frame frozen for 2 s") and "camera stuck" in r for r in states[8].reasons
            )
            moving = mon.assess(scene.render(t + 3.1)[0], t + 3.1)
            assert not moving.frozen
        else:
            assert not any(frozen)  # a file may hold a still shot; only a live camera can freeze


def test_update_measures_every_nth_frame(scene: DemoScene) -> None:
    mon = HealthMonitor(every=5)
    frame = scene.render(0.0)[0]
    results = [mon.update(frame, i / 30) for i in range(11)]
    assert [r is not None for r in results] == [i % 5 == 0 for i in range(11)]
    assert mon.current is results[10]


def test_grey_and_tiny_frames_are_measured() -> None:
    mon = HealthMonitor(every=1)
    grey = np.full((48, 64), 128, np.uint8)
    health = mon.assess(grey, 0.0)
    assert health.brightness == pytest.approx(128)
    assert health.sharpness == pytest.approx(0.0)
