"""Inputs an adversarial run found: each used to answer 500 or to send the Trio key where it should not.

A token holder is trusted to run the device, not to read its secrets: the Trio key is bound to its
endpoint, so pointing forwarding at another host drops it (unless a key is given in the same request),
and only https:// endpoints (or this device itself) are accepted.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.fake_trio import FakeTrio, ok

KEY = "sk-trio-api-7f3c9a1e5b2d8046"


@pytest.fixture
def trio() -> Iterator[FakeTrio]:
    with FakeTrio() as fake:
        yield fake


@pytest.fixture
def attacker() -> Iterator[FakeTrio]:
    with FakeTrio() as fake:
        yield fake


def _problem(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text
    return response.json()["detail"]


def test_a_home_of_no_user_is_a_422_not_a_500(agent_inproc) -> None:
    with agent_inproc.client() as c:
        before = c.get("/v1/status").json()["source"]["uri"]
        detail = _problem(c.put("/v1/pipeline/source", json={"uri": "~nosuchuser/x"}), 422)
        assert "~nosuchuser" in detail and "absolute path" in detail
        detail = _problem(c.put("/v1/pipeline/source", json={"uri": "file:~nosuchuser/v.mp4"}), 422)
        assert "absolute path" in detail
        detail = _problem(c.post("/v1/engines/rebuild", json={"calibration_dir": "~nosuchuser"}), 422)
        assert "calibration_dir" in detail or "~nosuchuser" in detail
        # nothing changed: the source is the one it was, no job was queued for the refused requests
        assert c.get("/v1/status").json()["source"]["uri"] == before
        assert not [j for j in c.get("/v1/jobs").json()["jobs"] if j["kind"] == "engine_rebuild"]


def test_a_path_too_long_for_the_filesystem_is_a_422_not_a_500(agent_inproc) -> None:
    """Found by the schemathesis run after the merge: ENAMETOOLONG from a source path, on the one-camera
    route and on a multi-camera agent's camera route alike (both go through sources/files.py)."""
    with agent_inproc.client() as c:
        before = c.get("/v1/status").json()["source"]["uri"]
        for uri in ("x" * 300, "file:" + "y" * 300, "/tmp/" + "\u1e70\u033a" * 100):
            detail = _problem(c.put("/v1/pipeline/source", json={"uri": uri}), 422)
            assert "File name too long" in detail and "accepted sources are" in detail
        assert c.get("/v1/status").json()["source"]["uri"] == before


@pytest.mark.parametrize("key", ["Åï", "sk-trio\u200b-abc", "two words", "line\nbreak", "sk:trio@x"])
def test_a_key_no_authorization_header_can_carry_is_refused(agent_inproc, trio: FakeTrio, key: str) -> None:
    trio.reply(ok())
    with agent_inproc.client() as c:
        c.put("/v1/forwarding", json={"base_url": trio.url, "mode": "frame"}).raise_for_status()
        detail = _problem(c.put("/v1/forwarding", json={"api_key": key}), 422)
        assert "api_key" in detail and key not in detail
        assert c.get("/v1/forwarding").json()["api_key"] == "not set"
        result = c.post("/v1/forwarding/test", json={"timeout_s": 5})
        assert result.status_code == 200 and result.json()["outcome"] == "no_key"
    assert not trio.requests
    assert not (agent_inproc.home / "trio_api_key").exists()


def test_the_key_does_not_follow_a_new_endpoint(agent_inproc, trio: FakeTrio, attacker: FakeTrio) -> None:
    trio.reply(ok(), then=ok())
    attacker.reply(ok(), then=ok())
    with agent_inproc.client(timeout=30.0) as c:
        body = {"base_url": trio.url, "mode": "frame", "api_key": KEY}
        c.put("/v1/forwarding", json=body).raise_for_status()
        assert c.post("/v1/forwarding/test").json()["ok"]
        assert trio.requests[-1].headers["Authorization"] == f"Bearer {KEY}"

        # a non-loopback http endpoint is refused outright, and changes nothing
        for url in ("http://attacker.example:8479/api", "http://10.0.0.9/api"):
            detail = _problem(c.put("/v1/forwarding", json={"base_url": url}), 422)
            assert "https://" in detail
            detail = _problem(c.put("/v1/forwarding", json={"frame_url": url}), 422)
            assert "https://" in detail
        assert (agent_inproc.home / "trio_api_key").exists()

        # another endpoint without a key: the key is dropped, nothing reaches the new host
        moved = c.put("/v1/forwarding", json={"base_url": attacker.url})
        assert moved.status_code == 200 and moved.json()["api_key"] == "not set"
        assert c.post("/v1/forwarding/test").json()["outcome"] == "no_key"
        # an absolute frame_url elsewhere is a new endpoint too
        c.put("/v1/forwarding", json={"base_url": trio.url, "api_key": KEY}).raise_for_status()
        moved = c.put("/v1/forwarding", json={"frame_url": attacker.url + "/check-frame"})
        assert moved.json()["api_key"] == "not set"
        assert c.post("/v1/forwarding/test").json()["outcome"] == "no_key"
        assert not attacker.requests

        # a new endpoint with its key in the same request: that key goes there
        other = "sk-other-key-0123456789abcdef"
        c.put(
            "/v1/forwarding", json={"base_url": attacker.url, "frame_url": "/check-frame", "api_key": other}
        ).raise_for_status()
        assert c.post("/v1/forwarding/test").json()["ok"]
        assert attacker.requests[-1].headers["Authorization"] == f"Bearer {other}"

        history = c.get("/v1/models").json()["history"]
        changes = [h for h in history if h["action"] == "forwarding"]
        # newest first: each endpoint change, and what became of the key
        assert [h["details"]["key"] for h in changes] == [
            "replaced",
            "cleared",
            "replaced",
            "cleared",
            "replaced",
        ]
        assert all(h["outcome"] == "changed" for h in changes)
        assert "give api_key again" in changes[1]["reason"]
        texts = [c.get("/v1/logs", params={"limit": 2000}).text, c.get("/v1/models").text]
        texts.append(c.get("/v1/forwarding").text)
    assert "Trio endpoint" in texts[0]
    for text in texts:
        assert KEY not in text and other not in text


def test_the_environment_key_goes_only_to_the_configured_endpoint(
    tmp_path, trio: FakeTrio, attacker: FakeTrio
) -> None:
    from agent.core.home import AgentHome
    from agent.forwarding.forwarder import Forwarder
    from agent.forwarding.trio import KEY_ENV
    from fieldtui.protocol import ForwardingUpdate

    trio.reply(ok(), then=ok())
    attacker.reply(ok(), then=ok())
    frame = np.zeros((32, 32, 3), np.uint8)
    fwd = Forwarder(
        AgentHome(tmp_path / "home"),
        env={KEY_ENV: KEY},
        defaults={"base_url": trio.url, "mode": "frame"},
        latest=lambda: (frame, [], {}),
    )
    try:
        assert fwd.state().api_key == f"set (from ${KEY_ENV})"
        assert fwd.test().ok and trio.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
        state = fwd.update(ForwardingUpdate(base_url=attacker.url))
        assert (
            state.api_key.startswith("not set for this endpoint")
            and trio.url.split("/api")[0] in state.api_key
        )
        assert fwd.test().outcome == "no_key" and not attacker.requests
        fwd.update(ForwardingUpdate(base_url=trio.url))
        assert fwd.test().ok
    finally:
        fwd.close()
