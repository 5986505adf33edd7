"""The Trio client (agent/forwarding/trio.py) against a real fake Trio server on loopback: requests as Trio
documents them, and every failure class mapped to an outcome with a remediation."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from agent.forwarding.trio import REMEDIATION, TrioClient, parse_retry_after
from tests.fake_trio import FakeTrio, close, hang, ok, rate_limited, raw, trio_error

KEY = "sk-trio-test-0123456789abcdef"


@pytest.fixture
def trio() -> Iterator[FakeTrio]:
    with FakeTrio() as fake:
        yield fake


@pytest.fixture
def client(trio: FakeTrio) -> Iterator[TrioClient]:
    c = TrioClient(trio.url, KEY, timeout=5.0)
    yield c
    c.close()


def check_once(base_url: str, key: str | None, timeout: float = 5.0):
    """One check-once with a client of its own (for a timeout, a URL or a key the fixture has not)."""
    c = TrioClient(base_url, key, timeout=timeout)
    try:
        return c.check_once("rtsp://cam/live", "q")
    finally:
        c.close()


def _no_key_in(result) -> None:
    assert KEY not in result.model_dump_json()


def test_check_once_sends_bearer_stream_and_condition(trio: FakeTrio, client: TrioClient) -> None:
    trio.reply(ok(triggered=True, explanation="a person is on the track", latency_ms=812))
    result = client.check_once("rtsp://cam.example/live", "is anyone on the track?")
    assert result.ok and result.outcome == "triggered" and result.triggered is True
    assert result.explanation == "a person is on the track" and result.trio_latency_ms == 812
    assert result.http_status == 200 and result.latency_ms is not None and result.payload_bytes > 0
    (req,) = trio.requests
    assert req.path == "/api/check-once"
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.json() == {"stream_url": "rtsp://cam.example/live", "condition": "is anyone on the track?"}
    assert result.payload_bytes == len(req.body)
    _no_key_in(result)


def test_frame_mode_posts_multipart_jpeg_and_condition(trio: FakeTrio, client: TrioClient) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"x" * 1000 + b"\xff\xd9"
    result = client.send_frame("/check-frame", jpeg, "is the door open?")
    assert result.ok and result.outcome == "ok" and result.triggered is False and result.mode == "frame"
    (req,) = trio.requests
    assert req.path == "/api/check-frame"
    assert req.headers["Content-Type"].startswith("multipart/form-data")
    assert jpeg in req.body and b'name="condition"' in req.body and b"is the door open?" in req.body
    assert b'filename="frame.jpg"' in req.body and b"image/jpeg" in req.body
    assert result.payload_bytes == len(req.body)


def test_frame_url_may_be_absolute(trio: FakeTrio, client: TrioClient) -> None:
    client.send_frame(trio.url.replace("/api", "/elsewhere/frames"), b"\xff\xd8\xff\xd9", "q")
    assert trio.requests[0].path == "/elsewhere/frames"


@pytest.mark.parametrize(
    ("reply", "outcome", "code", "remediation"),
    [
        (trio_error(401, "UNAUTHORIZED", "invalid API key"), "unauthorized", "UNAUTHORIZED", None),
        (raw(401, b"nope"), "unauthorized", "unauthorized", REMEDIATION["unauthorized"]),
        (
            trio_error(400, "STREAM_OFFLINE", "stream is offline", "Check the camera is streaming"),
            "bad_request",
            "STREAM_OFFLINE",
            "Check the camera is streaming",
        ),
        (
            trio_error(400, "NOT_LIVESTREAM", "not a live stream"),
            "bad_request",
            "NOT_LIVESTREAM",
            REMEDIATION["NOT_LIVESTREAM"],
        ),
        (raw(404, b"not found"), "not_found", "not_found", REMEDIATION["not_found"]),
        (
            raw(503, b"<html>down</html>", "text/html"),
            "server_error",
            "server_error",
            REMEDIATION["server_error"],
        ),
        (raw(200, b"not json"), "bad_response", "bad_response", REMEDIATION["bad_response"]),
    ],
)
def test_http_errors_carry_code_message_and_remediation(
    trio: FakeTrio, client: TrioClient, reply, outcome: str, code: str, remediation: str | None
) -> None:
    trio.reply(reply)
    result = client.check_once("rtsp://cam/live", "q")
    assert not result.ok and result.outcome == outcome
    assert result.error is not None and result.error.code == code
    assert result.error.remediation == (remediation or REMEDIATION["unauthorized"])
    assert result.http_status == reply.status
    _no_key_in(result)


def test_401_without_trio_remediation_gets_ours(trio: FakeTrio, client: TrioClient) -> None:
    trio.reply(trio_error(401, "UNAUTHORIZED", "invalid API key"))
    result = client.check_once("rtsp://cam/live", "q")
    assert "invalid API key" in result.error.message and "api_key" in result.error.remediation


def test_429_reports_retry_after(trio: FakeTrio, client: TrioClient) -> None:
    trio.reply(rate_limited(7))
    result = client.check_once("rtsp://cam/live", "q")
    assert result.outcome == "rate_limited" and result.retry_after_s == 7.0
    assert result.error.code == "RATE_LIMITED" and result.error.remediation


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Fri, 27 Nov 2026 10:00:30 GMT", now=1795773600.0) == 30.0
    assert parse_retry_after("soon") == 30.0 and parse_retry_after(None) == 30.0
    assert parse_retry_after("-5") == 0.0 and parse_retry_after("99999999") == 3600.0


def test_hang_times_out_with_the_limit_in_words(trio: FakeTrio) -> None:
    trio.reply(hang())
    result = check_once(trio.url, KEY, timeout=0.5)
    assert result.outcome == "timeout" and "timed out after 0.5s" in result.error.message
    assert result.error.remediation == REMEDIATION["timeout"]
    _no_key_in(result)


def test_closed_connection(trio: FakeTrio, client: TrioClient) -> None:
    trio.reply(close())
    result = client.check_once("rtsp://cam/live", "q")
    assert result.outcome == "connection_closed" and result.error.remediation


def test_refused_connection() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = check_once(f"http://127.0.0.1:{port}/api", KEY, timeout=2.0)
    assert result.outcome == "unreachable" and "connection refused" in result.error.message
    assert result.error.remediation == REMEDIATION["unreachable"]
    _no_key_in(result)


def test_no_key_sends_nothing(trio: FakeTrio) -> None:
    result = check_once(trio.url, None)
    assert result.outcome == "no_key" and "FIELDTUI_AGENT_TRIO_API_KEY" in result.error.remediation
    assert trio.requests == []


def test_repr_hides_the_key() -> None:
    c = TrioClient("http://127.0.0.1:1/api", KEY)
    try:
        assert KEY not in repr(c)
    finally:
        c.close()


def test_a_key_echoed_by_the_server_is_cut_out(trio: FakeTrio, client: TrioClient) -> None:
    trio.reply(trio_error(401, "UNAUTHORIZED", f"key {KEY} is revoked", f"replace {KEY}"))
    result = client.check_once("rtsp://cam/live", "q")
    assert result.error.message.endswith("key *** is revoked") and result.error.remediation == "replace ***"
    _no_key_in(result)
