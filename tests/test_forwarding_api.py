"""``GET/PUT /v1/forwarding`` and ``POST /v1/forwarding/test`` on a real agent (a subprocess, so its
``agent.log`` is real too) against the fake Trio server; the key never comes back out."""

from __future__ import annotations

import stat
from collections.abc import Iterator

import pytest

from tests.fake_trio import FakeTrio, close, hang, ok, rate_limited, trio_error

KEY = "sk-trio-api-7f3c9a1e5b2d8046"


@pytest.fixture
def trio() -> Iterator[FakeTrio]:
    with FakeTrio() as fake:
        yield fake


def test_forwarding_over_http_and_the_key_stays_secret(agent_proc, trio: FakeTrio) -> None:
    with agent_proc.client(timeout=30.0) as c:
        fresh = c.get("/v1/forwarding").json()
        assert fresh["api_key"] == "not set" and fresh["enabled"] is False
        assert fresh["base_url"] == "https://trio.machinefi.com/api"

        r = c.put(
            "/v1/forwarding",
            json={"base_url": trio.url, "stream_url": "rtsp://cam.example/live", "api_key": KEY},
        )
        assert r.status_code == 200, r.text
        assert KEY not in r.text and r.json()["api_key"].endswith("(key file)")
        key_file = agent_proc.home / "trio_api_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

        trio.reply(ok(triggered=True, explanation="someone is on the track"))
        result = c.post("/v1/forwarding/test", json={"condition": "is anyone on the track?"}).json()
        assert result["ok"] and result["triggered"] and result["http_status"] == 200
        assert result["explanation"] == "someone is on the track" and result["payload_bytes"] > 0
        assert trio.requests[-1].json()["condition"] == "is anyone on the track?"
        assert trio.requests[-1].headers["Authorization"] == f"Bearer {KEY}"

        # every error class, with its remediation (Trio's own when it gave one)
        seen = {}
        for reply, timeout in [
            (trio_error(401, "UNAUTHORIZED", f"invalid key {KEY[:6]}"), None),
            (trio_error(400, "STREAM_OFFLINE", "offline", "Start the camera stream"), None),
            (trio_error(400, "NOT_LIVESTREAM", "not live"), None),
            (hang(), 1.0),
            (close(), None),
        ]:
            trio.reply(reply)
            body = {"timeout_s": timeout} if timeout else {}
            res = c.post("/v1/forwarding/test", json=body).json()
            assert res["ok"] is False and res["error"]["remediation"], res
            seen[res["error"]["code"]] = res["error"]
        assert set(seen) == {
            "UNAUTHORIZED",
            "STREAM_OFFLINE",
            "NOT_LIVESTREAM",
            "timeout",
            "connection_closed",
        }
        assert seen["STREAM_OFFLINE"]["remediation"] == "Start the camera stream"
        assert "stream_url" in seen["NOT_LIVESTREAM"]["remediation"]
        assert "api_key" in seen["UNAUTHORIZED"]["remediation"]
        assert "timed out after 1s" in seen["timeout"]["message"]

        trio.reply(rate_limited(60))
        res = c.post("/v1/forwarding/test").json()
        assert res["outcome"] == "rate_limited" and res["retry_after_s"] == 60.0
        state = c.get("/v1/forwarding").json()
        assert state["stats"]["backoff_remaining_s"] > 50
        assert state["stats"]["forwards"]["unauthorized"] == 1

        # bad settings: 422, one line, nothing changed, no key quoted back
        bad = c.put("/v1/forwarding", json={"api_key": 12345678901234})
        assert bad.status_code == 422 and "12345678901234" not in bad.text and "api_key" in bad.text
        bad = c.put("/v1/forwarding", json={"enabled": True, "stream_url": None})
        assert bad.status_code == 422 and "stream_url" in bad.json()["detail"]
        assert c.get("/v1/forwarding").json()["enabled"] is False

        metrics = c.get("/metrics").text
        assert 'fieldtui_agent_forwards_total{outcome="triggered"} 1.0' in metrics
        assert "fieldtui_agent_forward_queue_depth 0.0" in metrics
        assert "fieldtui_agent_forward_latency_seconds_count" in metrics

        everything = [c.get("/v1/forwarding").text, c.get("/v1/logs", params={"limit": 2000}).text]
        assert "forwarding to Trio" in everything[1]  # the failures were logged, without the key
    log_file = (agent_proc.home / "agent.log").read_text()
    assert "Trio" in log_file
    for text in [*everything, log_file, agent_proc.stderr()]:
        assert KEY not in text
    # the message Trio sent quoted part of the key; six characters are not the key
    assert KEY[:6] in seen["UNAUTHORIZED"]["message"]


def test_key_from_the_environment(start_agent, agent_home, trio: FakeTrio) -> None:
    # the environment's key goes only to the endpoint config.toml names (tests/test_api_hostile.py)
    (agent_home / "config.toml").write_text(f'[forwarding]\nbase_url = "{trio.url}"\n')
    agent = start_agent(agent_home, env={"FIELDTUI_AGENT_TRIO_API_KEY": KEY})
    with agent.client() as c:
        assert c.get("/v1/forwarding").json()["api_key"] == "set (from $FIELDTUI_AGENT_TRIO_API_KEY)"
        c.put("/v1/forwarding", json={"base_url": trio.url, "mode": "frame"}).raise_for_status()
        res = c.post("/v1/forwarding/test").json()
        assert res["ok"] and res["mode"] == "frame", res
        req = trio.requests[-1]
        assert req.path == "/api/check-frame" and req.headers["Authorization"] == f"Bearer {KEY}"
        assert b"\xff\xd8" in req.body  # the latest frame, as JPEG
        assert KEY not in c.get("/v1/logs").text
