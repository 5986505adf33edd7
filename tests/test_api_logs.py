"""GET /v1/logs and the log ring buffer: filters, capacity, and no credential ever stored."""

from __future__ import annotations

import logging
import time

from agent.core.logbuf import LogBuffer, redact, rotating_file_handler


def test_redaction_covers_uris_headers_parameters_and_the_token():
    token = "Zq8xVb1-TOKEN-value_123"
    cases = {
        "opening rtsp://admin:hunter2@10.0.0.9:554/live": "opening rtsp://***@10.0.0.9:554/live",
        "GET http://u@cam/x.mjpg": "GET http://***@cam/x.mjpg",
        "header Authorization: Bearer abc.def-ghi": "header Authorization: Bearer ***",
        "retry with token=abcdef&x=1": "retry with token=***&x=1",
        "api_key: sk-12345 rejected": "api_key: *** rejected",
        f"client sent {token} twice: {token}": "client sent *** twice: ***",
        "nothing secret here: 3 detections": "nothing secret here: 3 detections",
        # words that look like a secret's name are not secrets
        "model v3 finds basic fusions": "model v3 finds basic fusions",
        "the token: expired, pair again": "the token: expired, pair again",
        "bearer of bad news": "bearer of bad news",
        "Authorization: Basic YWRtaW46aHVudGVyMg==": "Authorization: Basic ***",
        '{"api_key": "sk-live"}': '{"api_key": "***"}',
    }
    for raw, expected in cases.items():
        assert redact(raw, [token]) == expected


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def test_buffer_filters_by_time_level_and_count_and_keeps_the_newest():
    published = []
    buf = LogBuffer(capacity=5, level=logging.DEBUG, on_line=published.append)
    log = _logger("test.logbuf.filters", buf)
    try:
        for i in range(8):
            log.info("line %d", i)
        assert [ln.message for ln in buf.query().lines] == [f"line {i}" for i in range(3, 8)]
        assert len(published) == 8  # every line went to the SSE side
        cut = buf.query().lines[1].ts
        assert all(ln.ts > cut for ln in buf.query(since=cut).lines)
        log.warning("careful")
        log.error("broken")
        assert [ln.level for ln in buf.query(level="warning").lines] == ["WARNING", "ERROR"]
        assert [ln.message for ln in buf.query(limit=2).lines] == ["careful", "broken"]
    finally:
        log.removeHandler(buf)


def test_a_traceback_stays_out_of_the_api_but_says_what_failed():
    buf = LogBuffer(level=logging.DEBUG)
    log = _logger("test.logbuf.exc", buf)
    try:
        try:
            raise ValueError("bad frame size")
        except ValueError:
            log.exception("decoder failed")
    finally:
        log.removeHandler(buf)
    (line,) = buf.query().lines
    assert line.message == "decoder failed (ValueError: bad frame size)"
    assert "Traceback" not in line.message


def test_the_log_file_is_private_and_redacted(tmp_path):
    path = tmp_path / "agent.log"
    handler = rotating_file_handler(path, lambda: ["the-secret-token"])
    log = _logger("test.logbuf.file", handler)
    try:
        log.warning("source rtsp://op:pw@cam/1 lost; client used the-secret-token")
    finally:
        log.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert "rtsp://***@cam/1" in text and "client used ***" in text
    assert "pw@" not in text and "the-secret-token" not in text
    assert path.stat().st_mode & 0o777 == 0o600


def test_logs_route_filters_and_redacts(agent_inproc):
    log = logging.getLogger("fieldtui.agent.test")
    before = time.time()
    log.warning("camera at rtsp://root:toor@192.0.2.7/h264 stopped; token %s", agent_inproc.token)
    log.info("routine line")
    with agent_inproc.client() as c:
        page = c.get("/v1/logs", params={"since": before, "level": "WARNING"}).json()["lines"]
        everything = c.get("/v1/logs", params={"limit": 2000}).text
        assert [ln["message"] for ln in page if ln["logger"] == "fieldtui.agent.test"] == [
            "camera at rtsp://***@192.0.2.7/h264 stopped; token ***"
        ]
        assert "toor" not in everything and agent_inproc.token not in everything
        assert len(c.get("/v1/logs", params={"limit": 1}).json()["lines"]) == 1
        assert c.get("/v1/logs", params={"since": time.time() + 60}).json()["lines"] == []
