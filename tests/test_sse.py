"""The SSE reader: the line parser, and reconnection for real against a server that dies and comes back."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from contextlib import asynccontextmanager, suppress

import pytest

from fieldtui.client import AgentClient
from fieldtui.errors import AgentUnauthorized, AgentUnreachable
from fieldtui.protocol import Job, LogLine, ModelEvent, ModelInfo, Sample, StageTimes
from fieldtui.sse import ServerSentEvent, SSEDecoder, parse_event


def _feed(lines: list[str]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [e for line in lines if (e := decoder.decode(line)) is not None]


# --- the parser -----------------------------------------------------------------------------------


def test_decoder_fields_comments_and_multiline_data():
    events = _feed(
        [
            ": ping",
            "id: 7",
            "event: sample",
            'data: {"a":',
            "data:  1}",  # only one leading space is stripped
            "",
            "data",  # a field name alone means an empty value
            "",
            "",
        ]
    )
    assert events == [
        ServerSentEvent(event="sample", data='{"a":\n 1}', id="7"),
        ServerSentEvent(event="message", data="", id="7"),
    ]


def test_decoder_id_persists_resets_and_ignores_nul():
    events = _feed(["id: 1", "data: a", "", "data: b", "", "id: x\0y", "data: c", "", "id:", "data: d", ""])
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", "1"), ("d", "")]


def test_decoder_retry_and_unknown_fields():
    events = _feed(
        [
            "retry: 1500",
            "foo: bar",
            "event: job",
            "data: {}",
            "",
            "retry: soon",
            "data: x",
            "",
            "retry: 20",
            "",
        ]
    )
    assert [(e.event, e.retry) for e in events] == [("job", 1500), ("message", None), ("", 20)]


def test_decoder_drops_an_event_without_data():
    assert _feed(["event: sample", "id: 3", ""]) == []


def _sample(n: int) -> Sample:
    return Sample(
        ts=1000.0 + n,
        fps=30.0 + n,
        latency_p50_ms=10.0,
        latency_p95_ms=12.0,
        stages_ms=StageTimes(),
        confidence_avg=0.8,
        drop_rate=0.0,
        frames_total=n,
    )


def test_parse_event_gives_protocol_models_and_dicts_for_the_rest():
    name, model = parse_event(ServerSentEvent("sample", _sample(1).model_dump_json()))
    assert name == "sample" and isinstance(model, Sample) and model.fps == 31.0
    line = LogLine(ts=1.0, level="INFO", logger="x", message="hi")
    assert isinstance(parse_event(ServerSentEvent("log", line.model_dump_json()))[1], LogLine)
    job = Job(id="j1", kind="pipeline.restart", state="running", created=1.0)
    assert parse_event(ServerSentEvent("job", job.model_dump_json()))[1] == job
    assert parse_event(ServerSentEvent("model", '{"activated": "v7"}')) == ("model", {"activated": "v7"})
    assert parse_event(ServerSentEvent("future", "[1, 2]")) == ("future", {"value": [1, 2]})
    with pytest.raises(ValueError):
        parse_event(ServerSentEvent("sample", "not json"))


def test_a_model_event_carries_why_the_model_changed():
    info = {
        "version": "v1",
        "path": "/m/v1/model.onnx",
        "backend": "onnxruntime",
        "input_shape": [1, 3, 8, 8],
    }
    info |= {"input_dtype": "float32", "layout": "nchw", "names": {"0": "circle"}}
    why = {"change": "auto_rolled_back", "previous": "v2", "reason": "confidence collapsed on live frames"}
    name, model = parse_event(ServerSentEvent("model", json.dumps(info | why)))
    assert name == "model" and isinstance(model, ModelEvent) and isinstance(model, ModelInfo)
    assert (model.change, model.previous, model.reason) == ("auto_rolled_back", "v2", why["reason"])
    # A change this console does not know yet: still the ModelInfo it extends, not a dict.
    _, newer = parse_event(ServerSentEvent("model", json.dumps(info | {"change": "pinned", "reason": "x"})))
    assert type(newer) is ModelInfo and newer.version == "v1"


async def test_a_real_rollback_arrives_as_a_model_event_with_its_reason(start_agent, agent_home, tmp_path):
    from fieldtui.push import push_model
    from tests import storemodels as sm

    (agent_home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    agent = start_agent(agent_home)
    subscribed = asyncio.Event()  # set on the first event of any kind: the agent has this stream listed
    async with AgentClient(agent.url, token=agent.token) as client:
        for n in (1, 2):
            model = sm.detector(tmp_path / f"v{n}.onnx", seed=n)
            await push_model(client, model, f"v{n}", activate=True, job_timeout=60)

        async def first_model_event() -> ModelEvent:
            async with client.events() as stream:
                async for event, model in stream:
                    subscribed.set()
                    if event == "model":
                        return model
            raise AssertionError("the stream ended without a model event")

        reader = asyncio.create_task(first_model_event())
        await asyncio.wait_for(subscribed.wait(), 20)
        job = await client.wait_job((await client.rollback_model()).id, timeout=60)
        assert job.state == "succeeded", job.error
        event = await asyncio.wait_for(reader, 20)
    assert isinstance(event, ModelEvent) and event.version == "v1"
    assert (event.change, event.previous, event.reason) == ("rolled_back", "v2", "rollback requested")


# --- a tiny SSE server that can die and come back on the same port ----------------------------------


class TinySSE:
    """HTTP/1.1 on loopback: answers GET /v1/events with numbered ``sample`` events, body until close."""

    def __init__(
        self, port: int, first_id: int, count: int, *, status: int = 200, crlf: bool = False
    ) -> None:
        self.port, self.first_id, self.count, self.status, self.crlf = port, first_id, count, status, crlf
        self.requests: list[dict[str, str]] = []
        self.sent = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        # Killed mid-stream, or the client left: both are the point of these tests.
        with suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (h.partition(":") for h in head.split("\r\n")[1:] if h)
        }
        self.requests.append(headers)
        if self.status != 200:
            body = json.dumps(
                {"title": "Unauthorized", "status": self.status, "detail": "token refused: pair again"}
            )
            writer.write(
                f"HTTP/1.1 {self.status} Unauthorized\r\nContent-Type: application/problem+json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
        nl = "\r\n" if self.crlf else "\n"
        writer.write(f": ping{nl}retry: 100{nl}{nl}".encode())
        for i in range(self.first_id, self.first_id + self.count):
            writer.write(f"id: {i}{nl}event: sample{nl}data: {_sample(i).model_dump_json()}{nl}{nl}".encode())
            await writer.drain()
            await asyncio.sleep(0.02)
        self.sent.set()
        await reader.read()  # hold the stream open until the client or the test ends it

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def kill(self) -> None:
        """Die like a crashed agent: stop listening and cut every open stream."""
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        await self._server.wait_closed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def _serving(server: TinySSE):
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


async def test_stream_resumes_after_the_server_dies_and_comes_back():
    port = _free_port()
    first = TinySSE(port, first_id=1, count=3)
    second = TinySSE(port, first_id=4, count=3, crlf=True)
    states: list[str] = []
    got: list[tuple[str, Sample]] = []

    async with AgentClient(f"http://127.0.0.1:{port}", token="tok") as client:
        stream = client.events(backoff_initial=0.05, backoff_max=0.2, on_state=lambda s, r: states.append(s))

        async def read() -> None:
            async with stream:
                async for event, model in stream:
                    got.append((event, model))
                    if len(got) == 6:
                        return

        await first.start()
        reader = asyncio.create_task(read())
        await asyncio.wait_for(first.sent.wait(), 10)
        await first.kill()
        while "reconnecting" not in states:  # the client noticed and is retrying against a closed port
            await asyncio.sleep(0.05)
        async with _serving(second):
            await asyncio.wait_for(reader, 20)

    assert [m.frames_total for _, m in got] == [1, 2, 3, 4, 5, 6]
    assert all(e == "sample" and isinstance(m, Sample) for e, m in got)
    assert second.requests[-1]["last-event-id"] == "3"
    assert "last-event-id" not in first.requests[0]
    assert first.requests[0]["authorization"] == "Bearer tok"
    assert stream.reconnects >= 1 and stream.last_event_id == "6"
    assert states[-1] == "closed"


async def test_refused_token_is_not_retried():
    port = _free_port()
    async with (
        _serving(TinySSE(port, 1, 1, status=401)),
        AgentClient(f"http://127.0.0.1:{port}", token="bad") as client,
    ):
        with pytest.raises(AgentUnauthorized) as err:
            async for _ in client.events(backoff_initial=0.01):
                pass
    assert err.value.status == 401 and "pair again" in str(err.value)


async def test_gives_up_after_max_retries_with_the_reason():
    port = _free_port()  # nothing listens here
    async with AgentClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(AgentUnreachable, match="connection refused"):
            async for _ in client.events(backoff_initial=0.01, max_retries=2):
                pass


# --- against a real agent -------------------------------------------------------------------------


async def _samples(stream, n: int) -> list[Sample]:
    out: list[Sample] = []
    async for event, model in stream:
        if event == "sample":
            assert isinstance(model, Sample)
            out.append(model)
            if len(out) == n:
                return out
    raise AssertionError("the stream ended")


async def test_real_agent_streams_samples_at_2_hz_that_move(agent_proc):
    async with AgentClient(agent_proc.url, agent_proc.token) as client, client.events() as stream:
        samples = await asyncio.wait_for(_samples(stream, 6), 60)
    gaps = sorted(b.ts - a.ts for a, b in zip(samples, samples[1:], strict=False))
    assert gaps[len(gaps) // 2] <= 0.5  # the agent's own clock: about 2 Hz or better
    assert samples[-1].frames_total > samples[0].frames_total  # values move with the pipeline
    assert stream.last_event_id is not None and int(stream.last_event_id) > 0


async def test_real_agent_restart_on_the_same_home_and_port_resumes_the_stream(start_agent, agent_home):
    port = _free_port()
    first = start_agent(agent_home, "--port", str(port))
    assert first.url.endswith(f":{port}")
    states: list[tuple[str, str | None]] = []
    async with AgentClient(first.url, first.token) as client:
        stream = client.events(
            backoff_initial=0.2, backoff_max=1.0, on_state=lambda s, r: states.append((s, r))
        )
        async with stream:
            before = await asyncio.wait_for(_samples(stream, 2), 60)
            assert await asyncio.to_thread(first.stop) == 0
            first_gone = time.time()
            second = start_agent(agent_home, "--port", str(port))  # blocks until it listens again
            assert second.token == first.token  # same home: the console's saved token still works
            after = await asyncio.wait_for(_samples(stream, 2), 60)
    assert stream.reconnects >= 1
    assert any(s == "reconnecting" for s, _ in states)
    # Samples taken after the first agent was gone: the same stream now reads the second one.
    assert before[-1].ts < first_gone < after[0].ts
