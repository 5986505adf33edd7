"""SSE read for real: samples at >= 2 Hz that move with the pipeline, job/log/health events, resume
after Last-Event-ID, and slow subscribers that lose old events instead of slowing anyone down."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from agent.core.events import EventBus
from fieldtui.protocol import LogLine, Sample


def sse_events(response: httpx.Response) -> Iterator[tuple[str | None, str, dict]]:
    """(id, event, data) for each event of an open SSE response; a comment (keep-alive) comes through as
    (None, ":", {}) so a reader waiting for a deadline gets to look at the clock."""
    event_id, name, data = None, "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event_id, name, json.loads("\n".join(data))
            event_id, name, data = None, "message", []
        elif line.startswith(":"):
            yield None, ":", {}
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)


def collect(
    agent, seconds: float, *, params: dict | None = None, until=None, on_open=None
) -> list[tuple[float, str, dict]]:
    """Events for ``seconds`` (or until ``until(name, data)`` is true), with their arrival times.

    ``on_open`` is called once the stream is open: what it triggers cannot happen before we listen.
    """
    got: list[tuple[float, str, dict]] = []
    with (
        agent.client(timeout=httpx.Timeout(10, read=20)) as client,
        client.stream("GET", "/v1/events", params=params or {}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        if on_open is not None:
            on_open()
        deadline = time.monotonic() + seconds
        for _, name, data in sse_events(response):
            if name != ":":
                got.append((time.monotonic(), name, data))
            if time.monotonic() >= deadline or (name != ":" and until is not None and until(name, data)):
                break
    return got


def test_samples_arrive_at_2_hz_or_more_and_move_with_the_pipeline(agent_proc):
    # skip the start-up: from the first sample on, count what arrives in 3 s
    first = collect(agent_proc, 20, params={"events": "sample"}, until=lambda n, d: n == "sample")
    assert first, "no sample event at all"
    events = collect(agent_proc, 3.0, params={"events": "sample"})
    samples = [Sample.model_validate(d) for _, n, d in events if n == "sample"]
    span = events[-1][0] - events[0][0]
    assert span >= 2.5
    assert len(samples) >= 2 * 3, f"{len(samples)} samples in ~3 s"
    totals = [s.frames_total for s in samples]
    assert totals == sorted(totals) and totals[-1] > totals[0]  # the pipeline runs under our eyes
    assert all(s.fps > 0 for s in samples[1:])
    assert samples[-1].camera is not None and samples[-1].detections


def test_a_source_change_shows_in_samples_and_job_events(agent_proc):
    with agent_proc.client() as client:
        before = client.get("/v1/status").json()["sample"]["camera"]
    assert before is not None and not before["covered"]
    job_id: dict[str, str] = {}

    def change_source_soon() -> None:
        with agent_proc.client() as c:
            r = c.put("/v1/pipeline/source", json={"uri": "demo:?seed=7&faults=cover@0-120"})
            assert r.status_code == 202
            job_id["id"] = r.json()["id"]

    thread = threading.Thread(target=change_source_soon)
    try:
        events = collect(
            agent_proc,
            30,
            until=lambda n, d: n == "sample" and d.get("camera") and d["camera"]["covered"],
            on_open=thread.start,
        )
    finally:
        if thread.ident is not None:
            thread.join()
    names = {n for _, n, _ in events}
    assert {"sample", "job", "log"} <= names
    jobs = [d for _, n, d in events if n == "job" and d["id"] == job_id["id"]]
    assert [j["state"] for j in jobs][0] == "queued" and jobs[-1]["state"] == "succeeded"
    assert jobs[-1]["kind"] == "pipeline.source" and jobs[-1]["params"] == {
        "uri": "demo:?seed=7&faults=cover@0-120"
    }
    last = Sample.model_validate(events[-1][2])
    assert last.camera.covered and last.camera.brightness < before["brightness"]
    assert any(n == "log" and "switching source" in d["message"] for _, n, d in events)
    # health follows: a covered lens is "degraded" with the camera's reason
    health = collect(agent_proc, 10, params={"events": "health"}, until=lambda n, d: n == "health")
    assert health[-1][2]["status"] == "degraded"
    assert any(r.startswith("camera:") for r in health[-1][2]["reasons"])


def test_a_model_swap_is_announced(agent_inproc, tmp_path):
    from agent.inference.detector import Detector

    second = tmp_path / "second.onnx"
    second.write_bytes(agent_inproc.service.pipeline.detector.path.read_bytes())
    new = Detector.load(second)

    def swap_soon() -> None:
        agent_inproc.service.swap_detector(new).close()

    thread = threading.Thread(target=swap_soon)
    try:
        events = collect(
            agent_inproc,
            20,
            params={"events": "model"},
            until=lambda n, d: n == "model",
            on_open=thread.start,
        )
    finally:
        if thread.ident is not None:
            thread.join()
    assert events and events[-1][1] == "model", "no model event within 20 s of the swap"
    model = events[-1][2]
    assert model["path"] == str(second) and model["backend"] == "onnxruntime"
    with agent_inproc.client() as c:
        assert c.get("/v1/status").json()["model"]["path"] == str(second)


def test_a_client_resumes_after_last_event_id(agent_inproc):
    with agent_inproc.client() as client, client.stream("GET", "/v1/events") as response:
        ids = []
        for event_id, name, _ in sse_events(response):
            if name == ":":
                continue
            ids.append(int(event_id))
            if len(ids) == 3:
                break
    resume_from = ids[0]
    replayed = []
    with (
        agent_inproc.client(headers={"Last-Event-ID": str(resume_from)}) as client,
        client.stream("GET", "/v1/events") as response,
    ):
        for event_id, name, _ in sse_events(response):
            if name == ":":
                continue
            replayed.append(int(event_id))
            if len(replayed) == 2:
                break
    assert replayed == [resume_from + 1, resume_from + 2]  # nothing lost across the reconnect


def test_a_stuck_subscriber_loses_old_events_but_nobody_waits_for_it(agent_inproc):
    service = agent_inproc.service
    host, port = agent_inproc.url.removeprefix("http://").split(":")
    stuck = socket.create_connection((host, int(port)))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {agent_inproc.token}\r\n\r\n".encode()
    )
    try:
        deadline = time.monotonic() + 10
        while service.bus.subscriber_count < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        frames_before = service.pipeline.sample().frames_total
        # far more than the stuck client's queue and socket buffers can hold
        line = LogLine(ts=time.time(), level="INFO", logger="test", message="x" * 1000)
        for _ in range(3000):
            service.bus.publish("log", line)
        deadline = time.monotonic() + 10
        while service.bus.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.bus.dropped > 0
        # a reader that keeps up still gets fresh samples, and the pipeline kept going
        events = collect(agent_inproc, 10, params={"events": "sample"}, until=lambda n, d: n == "sample")
        assert events[-1][1] == "sample"
        assert service.pipeline.sample().frames_total > frames_before
    finally:
        stuck.close()


def test_a_client_that_vanishes_mid_stream_is_let_go(agent_inproc):
    """A connection reset under a busy stream: the agent unsubscribes it and keeps answering."""
    service = agent_inproc.service
    host, port = agent_inproc.url.removeprefix("http://").split(":")
    gone = socket.create_connection((host, int(port)))
    gone.sendall(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {agent_inproc.token}\r\n\r\n".encode()
    )
    assert gone.recv(4096).startswith(b"HTTP/1.1 200")
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    gone.close()  # a reset, as from a laptop that dropped off the Wi-Fi
    line = LogLine(ts=time.time(), level="INFO", logger="test", message="y" * 200)
    for _ in range(500):
        service.bus.publish("log", line)
    with agent_inproc.client(timeout=5) as client:
        assert client.get("/v1/health").status_code == 200
    deadline = time.monotonic() + 5
    while service.bus.subscriber_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.bus.subscriber_count == 0


async def test_a_stream_with_a_backlog_still_lets_the_loop_run():
    """Regression (found by the fuzz): with events queued, the stream never awaited anything, so the
    loop could not notice a dead client, and asyncio's "socket.send() raised exception" warnings
    became new `log` events for the same stream: the agent spun and stopped answering."""
    from agent.server.api.events import _stream

    bus = EventBus(queue_size=512)
    bus.attach(asyncio.get_running_loop())
    stream = _stream(bus, None, frozenset({"log"}))
    await stream.__anext__()  # the opening comment; subscribed now
    line = LogLine(ts=0, level="INFO", logger="t", message="m")
    for _ in range(300):
        bus.publish("log", line)
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    ticks = 0
    for _ in range(200):
        await stream.__anext__()
    other.cancel()
    await stream.aclose()
    assert ticks >= 100  # the loop ran between events
    assert bus.subscriber_count == 0  # closing the stream unsubscribed it


# --- the bus itself ---------------------------------------------------------------------------------


async def test_bus_numbers_in_delivery_order_and_drops_the_oldest():
    bus = EventBus(queue_size=4, replay_size=8)
    bus.attach(asyncio.get_running_loop())
    sub = bus.subscribe()
    line = LogLine(ts=0, level="INFO", logger="t", message="m")
    for _ in range(10):
        bus.publish("log", line)
    got = [await sub.get(0.1) for _ in range(4)]
    assert [e.id for e in got] == [7, 8, 9, 10]  # the 6 oldest went
    assert sub.dropped == 6 and bus.dropped == 6
    assert await sub.get(0.01) is None
    # a late subscriber resumes from the replay buffer
    late = bus.subscribe(last_event_id=8)
    assert [(await late.get(0.1)).id for _ in range(2)] == [9, 10]


async def test_bus_accepts_events_from_other_threads_and_closes_streams():
    bus = EventBus()
    bus.attach(asyncio.get_running_loop())
    sub = bus.subscribe()
    line = LogLine(ts=0, level="INFO", logger="t", message="from a thread")
    threads = [threading.Thread(target=bus.publish, args=("log", line)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [await sub.get(1.0) for _ in range(5)]
    assert [e.id for e in got] == [1, 2, 3, 4, 5]
    assert json.loads(got[0].data)["message"] == "from a thread"
    assert got[0].encode().startswith(b"id: 1\nevent: log\ndata: {")
    bus.close()
    assert await sub.get(5.0) is None and sub.closed
    bus.publish("log", line)  # after close: a no-op, not an error


@pytest.mark.parametrize("events_param", ["job", "health,log"])
def test_event_filter_is_honoured(agent_inproc, events_param):
    wanted = set(events_param.split(","))

    def restart_soon() -> None:
        time.sleep(0.3)
        with agent_inproc.client() as c:
            c.post("/v1/pipeline/restart")  # makes job and log events

    thread = threading.Thread(target=restart_soon)
    thread.start()
    try:
        got = collect(
            agent_inproc, 20, params={"events": events_param}, until=lambda n, d: n in ("job", "log")
        )
    finally:
        thread.join()
    assert got and {n for _, n, _ in got} <= wanted
