"""Trio forwarding on a multi-camera agent: a real CameraSet (agent/frames/cameraset.py) with two demo
cameras and the embedded demo model, wired as the agent wires it (attach_forwarding), sending to the
fake Trio server: rules name cameras, every camera is heard, each forward carries its camera's name."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from agent.core.cameras import CameraSpec
from agent.core.home import AgentHome
from agent.core.state import StateDB
from agent.forwarding.forwarder import attach_forwarding
from agent.forwarding.store import ForwardingError
from agent.forwarding.trio import KEY_ENV
from agent.frames.cameraset import CameraSet
from agent.inference.detector import Detector
from fieldtui.protocol import ForwardingRules, ForwardingUpdate
from tests.fake_trio import FakeTrio

KEY = "sk-trio-cameras-0123456789abcdef"
# Every qualifying frame goes out; confidence 0 so the demo scene always qualifies.
FAST = {"cooldown_s": 0.0, "rate_per_minute": 6000.0, "burst": 100, "min_confidence": 0.0}


def wait_until(pred, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _field(body: bytes, name: str) -> str | None:
    found = re.search(rb'name="' + name.encode() + rb'"\r\n\r\n(.*?)\r\n--', body, re.S)
    return found.group(1).decode() if found else None


@pytest.fixture(scope="module")
def forwarding(tmp_path_factory, monkeypatch_module):
    """Two demo cameras, 'a' (first) and 'b', one detector, forwarding attached as the service does."""
    monkeypatch_module.setenv(KEY_ENV, KEY)
    home = AgentHome(Path(tmp_path_factory.mktemp("fwd-cams")))
    det = Detector.load(None, threads=1)
    cams = [CameraSpec(n, f"demo:?fps=12&size=160x120&seed={i}") for i, n in enumerate("ab", 1)]
    pipeline = CameraSet(det, cams)
    with FakeTrio() as trio:
        service = SimpleNamespace(
            pipeline=pipeline,
            home=home,
            metrics=SimpleNamespace(registry=CollectorRegistry()),
            config=SimpleNamespace(sections={"forwarding": {"base_url": trio.url}}, camera="a"),
            db=StateDB(home.state_db),  # forwarding changes are audited in the history
        )
        fwd = attach_forwarding(service)
        pipeline.start()
        try:
            yield fwd, trio
        finally:
            pipeline.stop()
            fwd.close()
            det.close()
            service.db.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _sent(trio: FakeTrio, after: int) -> list[tuple[str | None, str | None]]:
    return [(_field(r.body, "camera"), _field(r.body, "condition")) for r in trio.requests[after:]]


def test_a_rule_naming_a_camera_forwards_only_that_camera_with_its_name(forwarding) -> None:
    fwd, trio = forwarding
    fwd.update(
        ForwardingUpdate(
            enabled=True,
            mode="frame",
            condition="anything odd on {camera}?",
            rules=ForwardingRules(cameras=["b"], **FAST),
        )
    )
    start = len(trio.requests)
    wait_until(lambda: len(trio.requests) >= start + 4, what="four forwards")
    sent = _sent(trio, start)
    assert {cam for cam, _ in sent} == {"b"}  # never the first camera, which the old wiring heard
    assert all(cond == "anything odd on b?" for _, cond in sent)
    wait_until(lambda: fwd.state().stats.last is not None)
    assert fwd.state().stats.last.camera == "b"


def test_a_rule_without_cameras_hears_every_camera(forwarding) -> None:
    fwd, trio = forwarding
    fwd.update(ForwardingUpdate(enabled=True, mode="frame", rules=ForwardingRules(**FAST)))
    start = len(trio.requests)
    wait_until(lambda: {cam for cam, _ in _sent(trio, start)} >= {"a", "b"}, what="forwards from a and b")


def test_a_rule_naming_an_unknown_camera_is_one_line_and_changes_nothing(forwarding) -> None:
    fwd, _ = forwarding
    before = fwd.state().model_dump(exclude={"stats"})
    with pytest.raises(ForwardingError) as err:
        fwd.update(ForwardingUpdate(enabled=False, rules=ForwardingRules(cameras=["b", "dock-9"])))
    assert err.value.status == 422
    assert str(err.value) == (
        "rules.cameras names 'dock-9', which this agent does not run; its cameras: a, b (nothing was changed)"
    )
    assert fwd.state().model_dump(exclude={"stats"}) == before
