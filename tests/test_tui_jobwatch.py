"""fieldtui.jobwatch against a real agent on 127.0.0.1: a job followed from its SSE events, a job that ended
before the stream was up (caught by the one read after connecting), the polling fallback for a link
without events, and the timeout."""

from __future__ import annotations

import pytest

from fieldtui.client import AgentClient
from fieldtui.errors import AgentTimeout
from fieldtui.jobwatch import watch_job
from fieldtui.protocol import BenchmarkRequest, Job

QUICK = BenchmarkRequest(iterations=3, warmup=0, accuracy_frames=0)


class Counting:
    """The client's ``job`` and ``events``, counting reads; ``events=False`` hides the event stream."""

    def __init__(self, client: AgentClient, *, events: bool = True) -> None:
        self.client, self.reads = client, 0
        self.base_url = client.base_url
        if events:
            self.events = client.events

    async def job(self, job_id: str) -> Job:
        self.reads += 1
        return await self.client.job(job_id)


@pytest.fixture
async def client(agent_inproc):
    async with AgentClient(agent_inproc.url, agent_inproc.token) as c:
        yield c


async def test_a_job_is_followed_from_its_events(client):
    api = Counting(client)
    seen: list[Job] = []
    job = await watch_job(api, await client.start_benchmark(QUICK), on_update=seen.append, timeout=60)
    assert job.state == "succeeded" and job.result is not None
    assert seen[-1] == job and [s.state for s in seen].count("succeeded") == 1
    assert api.reads <= 1  # the catch-up read; the rest came over SSE


async def test_a_job_that_ended_before_the_stream_was_up_is_caught(client):
    started = await client.start_benchmark(QUICK)
    await client.wait_job(started.id, timeout=60)
    api = Counting(client)
    job = await watch_job(api, started, timeout=60)  # `started` still says queued or running
    assert job.state == "succeeded" and api.reads == 1


async def test_without_an_event_stream_the_job_is_polled(client):
    api = Counting(client, events=False)
    job = await watch_job(api, await client.start_benchmark(QUICK), timeout=60, poll_s=0.05)
    assert job.state == "succeeded" and api.reads >= 1


async def test_a_job_running_past_the_timeout_says_so(client):
    started = await client.start_benchmark(BenchmarkRequest(iterations=5000, warmup=0, accuracy_frames=0))
    try:
        with pytest.raises(AgentTimeout, match=f"job {started.id} .* still running after 0.5 s"):
            await watch_job(client, started, timeout=0.5)
    finally:
        await client.cancel_job(started.id)
        await client.wait_job(started.id, timeout=60)
