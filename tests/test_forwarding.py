"""The forwarder (agent/forwarding/forwarder.py) against the fake Trio server: rules, drops counted, the 429
back-off as told, redaction before a frame leaves, settings and the key in the agent home."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.core.home import AgentHome
from agent.forwarding.forwarder import Forwarder
from agent.forwarding.store import ForwardingError
from agent.forwarding.trio import KEY_ENV
from agent.inference.postprocess import Detections
from fieldtui.protocol import ForwardingRules, ForwardingUpdate
from tests.fake_trio import FakeTrio, ok, rate_limited

KEY = "sk-trio-forwarding-0123456789abcdef"
NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
FAST = ForwardingRules(cooldown_s=0.0, rate_per_minute=6000.0, burst=100)  # every frame qualifies


def dets(*rows: tuple[int, float, tuple[float, float, float, float]]) -> Detections:
    return Detections(
        boxes=np.array([r[2] for r in rows], dtype=np.float32).reshape(-1, 4),
        scores=np.array([r[1] for r in rows], dtype=np.float32),
        class_ids=np.array([r[0] for r in rows], dtype=np.int64),
    )


def wait_until(pred: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def trio() -> Iterator[FakeTrio]:
    with FakeTrio() as fake:
        yield fake


@pytest.fixture
def make(tmp_path: Path, trio: FakeTrio) -> Iterator[Callable[..., Forwarder]]:
    made: list[Forwarder] = []

    def make(*, start: bool = True, latest=None, env=None, home: Path | None = None, **settings) -> Forwarder:
        fwd = Forwarder(
            AgentHome(home or tmp_path / "home"),
            latest=latest,
            env={KEY_ENV: KEY} if env is None else env,
            defaults={"base_url": trio.url},  # the endpoint the environment's key is bound to
        )
        made.append(fwd)
        fwd.update(ForwardingUpdate(**{"base_url": trio.url, "timeout_s": 5.0, **settings}))
        if start:
            fwd.start()
        return fwd

    yield make
    for fwd in made:
        fwd.close()


def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def sample(fwd: Forwarder, name: str, labels: dict[str, str]) -> float:
    return fwd.registry.get_sample_value(name, labels) or 0.0


def test_rules_pick_classes_and_confidence(make, trio: FakeTrio) -> None:
    trio.reply(ok(triggered=True, explanation="a square blocks the exit"))
    fwd = make(enabled=True, mode="frame", rules=FAST.model_copy(update={"classes": ["square"]}))
    fwd.on_frame(frame(), dets((0, 0.95, (10, 10, 40, 40))), NAMES)  # a circle: not a chosen class
    fwd.on_frame(frame(), dets((1, 0.30, (10, 10, 40, 40))), NAMES)  # a square, too unsure
    fwd.on_frame(frame(), dets(), NAMES)
    fwd.on_frame(frame(), dets((1, 0.80, (10, 10, 40, 40)), (0, 0.9, (50, 50, 80, 80))), NAMES)
    wait_until(lambda: fwd.state().stats.forwards.get("triggered") == 1, what="the forward")
    (req,) = trio.requests
    assert req.path == "/api/check-frame" and b"\xff\xd8" in req.body
    assert b"near the detected square?" in req.body  # {classes}: only the chosen class that triggered
    state = fwd.state()
    assert state.stats.last.explanation == "a square blocks the exit" and state.stats.last.triggered
    assert sample(fwd, "fieldtui_agent_forwards_total", {"outcome": "triggered"}) == 1
    assert sample(fwd, "fieldtui_agent_forward_latency_seconds_count", {}) == 1


def test_cooldown_per_class(make, trio: FakeTrio) -> None:
    fwd = make(
        enabled=True, stream_url="rtsp://cam/live", rules=FAST.model_copy(update={"cooldown_s": 600.0})
    )
    for _ in range(3):
        fwd.on_frame(frame(), dets((1, 0.9, (0, 0, 9, 9))), NAMES)
    fwd.on_frame(frame(), dets((2, 0.9, (0, 0, 9, 9))), NAMES)  # another class has its own cooldown
    wait_until(lambda: len(trio.requests) == 2, what="two forwards")
    assert fwd.state().stats.dropped == {"cooldown": 2}
    assert sample(fwd, "fieldtui_agent_forwards_dropped_total", {"reason": "cooldown"}) == 2
    assert [r.json()["stream_url"] for r in trio.requests] == ["rtsp://cam/live"] * 2


def test_rate_limit_and_queue_full_are_counted(make, trio: FakeTrio) -> None:
    rules = ForwardingRules(cooldown_s=0.0, rate_per_minute=1.0, burst=3)
    fwd = make(start=False, enabled=True, mode="frame", queue_size=2, rules=rules)
    for _ in range(6):
        fwd.on_frame(frame(), dets((1, 0.9, (0, 0, 9, 9))), NAMES)
    # two fit the queue; the rest find it full before any token is spent on them
    assert fwd.state().stats.dropped == {"queue_full": 4}
    assert fwd.state().stats.queue_depth == 2
    fwd.start()
    wait_until(lambda: len(trio.requests) == 2, what="the queued frames")
    wait_until(lambda: fwd.state().stats.queue_depth == 0, what="an empty queue")
    for _ in range(3):  # one token left of the burst of 3
        fwd.on_frame(frame(), dets((1, 0.9, (0, 0, 9, 9))), NAMES)
    assert fwd.state().stats.dropped == {"queue_full": 4, "rate_limited": 2}
    assert sample(fwd, "fieldtui_agent_forwards_dropped_total", {"reason": "rate_limited"}) == 2


def test_429_backs_off_for_retry_after(make, trio: FakeTrio) -> None:
    trio.reply(rate_limited(1.5), then=ok())
    fwd = make(enabled=True, stream_url="rtsp://cam/live", rules=FAST)
    deadline = time.monotonic() + 10
    while len(trio.requests) < 2 and time.monotonic() < deadline:
        fwd.on_frame(frame(), dets((1, 0.9, (0, 0, 9, 9))), NAMES)  # a frame every 10 ms meanwhile
        time.sleep(0.01)
    first, second = trio.requests[:2]
    assert second.ts - first.ts >= 1.5 - 0.01  # nothing sent before Retry-After elapsed
    stats = fwd.state().stats
    assert stats.forwards["rate_limited"] == 1 and stats.dropped["backoff"] > 0
    result = fwd.test()  # after the back-off, a test forward goes through
    assert result.ok


def test_test_forward_honours_a_running_backoff(make, trio: FakeTrio) -> None:
    trio.reply(rate_limited(30), then=ok())
    fwd = make(stream_url="rtsp://cam/live")
    first = fwd.test()
    assert first.outcome == "rate_limited" and first.retry_after_s == 30.0
    again = fwd.test()
    assert again.outcome == "rate_limited" and "nothing was sent" in again.error.message
    assert len(trio.requests) == 1


def test_redaction_blurs_chosen_classes_before_sending(make, trio: FakeTrio) -> None:
    image = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    original = image.copy()
    rules = FAST.model_copy(update={"redact_classes": ["circle"]})
    fwd = make(enabled=True, mode="frame", rules=rules)
    fwd.on_frame(image, dets((0, 0.9, (20, 20, 120, 120)), (1, 0.9, (180, 100, 300, 220))), NAMES)
    wait_until(lambda: trio.requests, what="the forward")
    body = trio.requests[0].body
    jpeg = body[body.index(b"\xff\xd8") : body.rindex(b"\xff\xd9") + 2]
    sent = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    circle, square = sent[30:110, 30:110], sent[110:210, 190:290]
    assert circle.std() < 20 < square.std()  # noise blurred away in the circle only
    assert np.array_equal(image, original)  # the pipeline's frame is never touched


def test_test_forward_in_frame_mode_sends_the_latest_frame(make, trio: FakeTrio) -> None:
    latest = {"value": None}
    fwd = make(mode="frame", latest=lambda: latest["value"])
    result = fwd.test()
    assert result.outcome == "no_frame" and "pipeline" in result.error.remediation and not trio.requests
    latest["value"] = (frame(), dets((3, 0.9, (5, 5, 50, 50))), NAMES)
    result = fwd.test(condition="is the {classes} upright?")
    assert result.ok and result.http_status == 200 and result.payload_bytes == len(trio.requests[0].body)
    assert b"is the cross upright?" in trio.requests[0].body


def test_settings_and_key_persist_in_the_home(make, tmp_path: Path, trio: FakeTrio) -> None:
    fwd = make(env={}, enabled=True, mode="frame", api_key=KEY, rules=FAST)
    key_file = tmp_path / "home" / "trio_api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    state = fwd.state()
    assert KEY not in state.model_dump_json() and state.api_key == f"{KEY[:3]}…{KEY[-4:]} (key file)"
    again = Forwarder(AgentHome(tmp_path / "home"), env={})
    try:
        assert again.settings == fwd.settings and again.store.key() == KEY
        from_env = Forwarder(
            AgentHome(tmp_path / "home"), env={KEY_ENV: "x"}, defaults={"base_url": trio.url}
        )
        assert from_env.state().api_key == f"set (from ${KEY_ENV})"
    finally:
        again.close()
    fwd.update(ForwardingUpdate(api_key=""))
    assert not key_file.exists() and fwd.state().api_key == "not set"
    assert fwd.test().outcome == "no_key"


def test_settings_that_cannot_work_change_nothing(make, tmp_path: Path) -> None:
    fwd = make(env={})
    before = (tmp_path / "home" / "forwarding.json").read_text()
    with pytest.raises(ForwardingError, match="stream_url"):
        fwd.update(ForwardingUpdate(enabled=True, mode="check-once", api_key=KEY))
    with pytest.raises(ForwardingError, match="base_url"):
        fwd.update(ForwardingUpdate(base_url="ftp://trio"))
    with pytest.raises(ForwardingError, match="api_key") as err:
        fwd.update(ForwardingUpdate(api_key="two words"))
    assert "two words" not in str(err.value)
    assert (tmp_path / "home" / "forwarding.json").read_text() == before
    assert not (tmp_path / "home" / "trio_api_key").exists() and not fwd.settings.enabled


def test_disabled_forwarder_does_nothing(make, trio: FakeTrio) -> None:
    fwd = make(enabled=False, mode="frame", rules=FAST)
    for _ in range(5):
        fwd.on_frame(frame(), dets((1, 0.9, (0, 0, 9, 9))), NAMES)
    time.sleep(0.3)
    assert trio.requests == [] and fwd.state().stats.dropped == {} and fwd.state().stats.queue_depth == 0


def test_config_toml_forwarding_table_gives_the_defaults(tmp_path: Path) -> None:
    fwd = Forwarder(AgentHome(tmp_path / "a"), defaults={"mode": "frame", "rules": {"burst": 4}}, env={})
    try:
        assert fwd.settings.mode == "frame" and fwd.settings.rules.burst == 4 and not fwd.settings.enabled
    finally:
        fwd.close()
    with pytest.raises(ForwardingError, match=r"\[forwarding\] in config.toml: rules.burst"):
        Forwarder(AgentHome(tmp_path / "b"), defaults={"rules": {"burst": 0}}, env={})
