"""Several cameras sharing one detector (agent/frames/multicam.py), with real demo cameras, a real dead
RTSP address, and the embedded demo model: fixed batch 1, and a dynamic-batch copy made here."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from agent.core.cameras import CameraSpec
from agent.core.errors import SourceError
from agent.frames.multicam import CameraError, MultiPipeline
from agent.inference.detector import Detector
from tests.modelgen import demo_with_batch

DEAD = "rtsp://admin:pw-s3cret@127.0.0.1:1/x"


def wait_until(predicate, timeout: float = 15.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def demo(seed: int, fps: int = 10) -> str:
    return f"demo:?fps={fps}&size=160x120&seed={seed}"


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory) -> Path:
    return demo_with_batch(tmp_path_factory.mktemp("dyn"), "batch")


@pytest.fixture
def batch3_model(demo_batch3_model) -> Path:
    return demo_batch3_model


@pytest.fixture
def run():
    started: list[MultiPipeline] = []
    detectors: list[Detector] = []

    def start(cameras, model=None, **kw) -> MultiPipeline:
        det = Detector.load(model, threads=1)
        detectors.append(det)
        mp = MultiPipeline(det, cameras, **kw)
        started.append(mp)
        mp.start()
        return mp

    yield start
    for mp in started:
        mp.stop()
    for det in detectors:
        det.close()


def test_dead_camera_does_not_stop_the_healthy_ones_and_its_password_stays_secret(run, caplog):
    caplog.set_level(logging.DEBUG)
    mp = run([CameraSpec("a", demo(1)), CameraSpec("dead", DEAD), CameraSpec("b", demo(2))])
    assert mp.max_batch == 1  # the demo model takes a fixed batch of 1: cameras take turns
    wait_until(lambda: all(mp.sample(n).frames_total >= 15 for n in ("a", "b")))
    status = mp.source_status("dead")
    assert not status.up and status.reason and "connection refused" in status.reason
    assert mp.sample("dead").frames_total == 0
    assert mp.sample("a").camera_name == "a"
    scrape = generate_latest(mp.metrics.registry).decode()
    assert 'fieldtui_agent_camera_source_up{camera="dead"} 0.0' in scrape
    assert 'fieldtui_agent_camera_source_up{camera="a"} 1.0' in scrape
    assert 'fieldtui_agent_frame_latency_seconds_count{camera="b"}' in scrape
    lint = subprocess.run(["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    shown = [status.model_dump_json(), mp.sample("dead").model_dump_json(), scrape, caplog.text]
    assert not any("pw-s3cret" in text for text in shown)
    assert "***@127.0.0.1:1" in status.uri


def test_dynamic_batch_serves_several_cameras_per_call(run, dynamic_model):
    mp = run([CameraSpec(f"c{i}", demo(i, fps=15)) for i in range(3)], model=dynamic_model, max_wait=0.03)
    assert mp.max_batch > 1
    wait_until(lambda: all(mp.sample(f"c{i}").frames_total >= 20 for i in range(3)))
    batches = mp.camera_metrics.batch_size
    calls = batches.collect()[0]
    count = next(s.value for s in calls.samples if s.name.endswith("_count"))
    total = next(s.value for s in calls.samples if s.name.endswith("_sum"))
    assert total / count > 1.5  # most calls carried frames of several cameras


def test_batched_results_match_one_frame_at_a_time(dynamic_model):
    with Detector.load(dynamic_model, threads=1) as det:
        frames = [np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8) for i in range(3)]
        prepared = [det.preprocess(f) for f in frames]
        outs = det.infer(np.concatenate([t for t, _ in prepared]))
        for i, (tensor, _) in enumerate(prepared):
            alone = det.infer(tensor)
            for a, b in zip(alone, outs, strict=True):
                np.testing.assert_allclose(a, b[i : i + 1], rtol=1e-4, atol=1e-4)


def test_overloaded_cameras_get_fair_shares(run):
    # Three cameras offering far more than one core infers: every camera's share within 20 %.
    mp = run([CameraSpec(f"c{i}", demo(i, fps=200)) for i in range(3)])
    wait_until(lambda: all(mp.sample(f"c{i}").frames_total >= 5 for i in range(3)))
    start = [mp.sample(f"c{i}").frames_total for i in range(3)]
    time.sleep(2.0)
    done = [mp.sample(f"c{i}").frames_total - s for i, s in enumerate(start)]
    assert min(done) > 0
    assert (max(done) - min(done)) / max(done) <= 0.2, done
    assert all(mp.sample(f"c{i}").dropped_total > 0 for i in range(3))  # each says it drops


def test_cameras_are_added_changed_disabled_and_removed_without_touching_the_others(run):
    mp = run([CameraSpec("a", demo(1))])
    wait_until(lambda: mp.sample("a").frames_total >= 5)
    assert mp.put_camera(CameraSpec("b", demo(2))) is True
    wait_until(lambda: mp.sample("b").frames_total >= 5)
    before = mp.sample("a").frames_total

    with pytest.raises(SourceError):  # a source that cannot open: nothing changes
        mp.put_camera(CameraSpec("b", "/no/such/file.mp4"))
    assert mp.spec("b").source == demo(2)

    assert mp.put_camera(CameraSpec("b", demo(3))) is False  # new source, same camera
    wait_until(lambda: mp.source_status("b").uri == demo(3))
    mp.put_camera(CameraSpec("b", demo(3), enabled=False))
    assert mp.source_status("b").reason == "camera disabled"
    frozen = mp.sample("b").frames_total
    mp.remove_camera("b")
    with pytest.raises(CameraError, match="no camera named 'b'") as err:
        mp.sample("b")
    assert err.value.status == 404
    with pytest.raises(CameraError, match="'a' is the last one"):
        mp.remove_camera("a")
    assert mp.sample("a").frames_total > before  # 'a' ran on through all of it
    assert frozen == 0  # a disabled camera reports nothing
    scrape = generate_latest(mp.metrics.registry).decode()
    assert 'camera="b"' not in scrape


def test_each_camera_keeps_its_own_confidence_threshold(run):
    # The same scene twice: the camera with the high threshold reports fewer detections.
    mp = run([CameraSpec("loose", demo(7), conf=0.05), CameraSpec("strict", demo(7), conf=0.9)])
    wait_until(lambda: all(mp.sample(n).frames_total >= 15 for n in ("loose", "strict")))
    found = {}
    for sample in mp.camera_metrics.detections.collect()[0].samples:
        if sample.name.endswith("_total"):
            cam = sample.labels["camera"]
            found[cam] = found.get(cam, 0) + sample.value
    assert found.get("loose", 0) > 0
    frames = {n: mp.sample(n).frames_total for n in ("loose", "strict")}
    assert found.get("strict", 0) / frames["strict"] < found["loose"] / frames["loose"]


def test_a_model_swap_keeps_every_camera_running_and_rechecks_the_batch(run, dynamic_model):
    mp = run([CameraSpec("a", demo(1, fps=15)), CameraSpec("b", demo(2, fps=15))])
    assert mp.max_batch == 1
    wait_until(lambda: all(mp.sample(n).frames_total >= 5 for n in ("a", "b")))
    new = Detector.load(dynamic_model, threads=1)
    old = mp.swap_detector(new)
    try:
        assert old is not new and mp.detector is new and mp.max_batch > 1
        old.close()  # safe: no inference runs on it any more
        before = {n: mp.sample(n).frames_total for n in ("a", "b")}
        wait_until(lambda: all(mp.sample(n).frames_total >= before[n] + 10 for n in ("a", "b")))
        assert all(mp.lane(n).error is None for n in ("a", "b"))
    finally:
        mp.stop()
        new.close()


def test_a_fixed_batch_of_three_is_filled_by_the_cameras_and_padded_when_fewer_are_ready(run, batch3_model):
    # Two cameras for a batch of three: every call is padded, and each camera gets its own rows back.
    mp = run([CameraSpec("a", demo(1, fps=15)), CameraSpec("b", demo(2, fps=15))], model=batch3_model)
    assert mp.max_batch == 3
    assert (
        mp.batching() == "batched: up to 3 frames a call (the model's fixed batch: fewer frames are padded)"
    )
    wait_until(lambda: all(mp.sample(n).frames_total >= 10 for n in ("a", "b")))
    assert all(mp.lane(n).error is None for n in ("a", "b"))
    calls = mp.camera_metrics.batch_size.collect()[0]
    count = next(s.value for s in calls.samples if s.name.endswith("_count"))
    total = next(s.value for s in calls.samples if s.name.endswith("_sum"))
    assert count > 0 and 1 <= total / count <= 2  # real frames only: the padding is not counted

    with Detector.load(batch3_model, threads=1) as fixed, Detector.load(None, threads=1) as one:
        assert fixed.fixed_batch == 3 and one.fixed_batch == 1
        frames = [np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8) for i in range(3)]
        tensors = [fixed.preprocess(f)[0] for f in frames]
        for n in (1, 2, 3):  # padded to three, cut back to n rows, each the frame's own
            outs = fixed.infer(np.concatenate(tensors[:n]))
            for i in range(n):
                for a, b in zip(one.infer(tensors[i]), outs, strict=True):
                    assert b.shape[0] == n
                    np.testing.assert_allclose(a, b[i : i + 1], rtol=1e-4, atol=1e-4)


def test_a_fixed_batch_of_one_with_several_cameras_takes_turns_and_says_so():
    with Detector.load(None, threads=1) as det:
        mp = MultiPipeline(
            det, [CameraSpec("a", demo(1)), CameraSpec("b", demo(2)), CameraSpec("c", demo(3))]
        )
        assert mp.max_batch == 1
        assert mp.batching() == "the model takes one frame a call (fixed batch 1): the 3 cameras take turns"


def test_non_finite_outputs_are_counted_on_a_multi_camera_agent(run, tmp_path):
    # As the one-camera pipeline counts them (FieldtuiModelNonFinite): NaN on the dark camera's frames.
    from tests.test_nonfinite import dark_nan_detector

    model = dark_nan_detector(tmp_path / "darknan.onnx")
    mp = run([CameraSpec("lit", demo(1)), CameraSpec("dark", f"{demo(2)}&faults=dark@0-600")], model=model)
    wait_until(lambda: all(mp.sample(n).frames_total >= 5 for n in ("lit", "dark")))
    counted = mp.metrics.frames_nonfinite._value.get()  # noqa: SLF001 - the counter's own value
    assert counted >= 5
    assert counted <= mp.sample("dark").frames_total + 1  # the lit camera's frames are finite
