"""Following a job to its end from the agent's SSE ``job`` events, polling only when there is no stream.

The agent publishes every job change on ``GET /v1/events`` (progress at most four times a second, every
stage change and the final state at once), so a progress bar fed from the stream moves as the job does,
with no request per tick. Subscribing races the job: it may end before the stream is up. So once the
stream says it is connected, the job is read once with ``GET /v1/jobs/{id}``; an end found there ends
the watch. A link with no event stream (refused, or a service without ``events``) falls back to reading
the job every ``poll_s``.

No Textual import: the screens pass ``on_update``, which only posts a message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from fieldtui.errors import AgentClientError, AgentTimeout
from fieldtui.protocol import Job

TERMINAL = ("succeeded", "failed", "cancelled")
UpdateFn = Callable[[Job], None]


def finished(job: Job) -> bool:
    return job.state in TERMINAL


async def watch_job(
    api: Any,
    job: Job,
    *,
    on_update: UpdateFn | None = None,
    timeout: float | None = 600.0,
    poll_s: float = 0.3,
) -> Job:
    """``job`` as it ends; ``on_update(job)`` on every change seen. AgentTimeout past ``timeout``."""
    seen: dict[str, Any] = {"last": None, "progress": -1.0}

    def update(new: Job) -> None:
        # The catch-up read can answer older news than an event already shown: never step back.
        if not finished(new) and new.progress < seen["progress"]:
            return
        key = (new.state, new.stage, round(new.progress, 3))
        if key != seen["last"]:
            seen["last"], seen["progress"] = key, new.progress
            if on_update is not None:
                on_update(new)

    update(job)
    if finished(job):
        return job

    async def watch() -> Job:
        if hasattr(api, "events"):
            try:
                return await _from_events(api, job, update)
            except AgentClientError:
                pass  # the stream was refused or lost for good: read the job instead
        return await _by_polling(api, job, update, poll_s)

    try:
        return await asyncio.wait_for(watch(), timeout)
    except asyncio.TimeoutError:
        stage = seen["last"][1] if seen["last"] else ""
        raise AgentTimeout(
            f"job {job.id} ({job.kind}) still running after {timeout:g} s, at {stage or 'no stage'}; "
            "it goes on on the device, which keeps its result",
            url=getattr(api, "base_url", None),
        ) from None


async def _from_events(api: Any, job: Job, update: UpdateFn) -> Job:
    connected = asyncio.Event()

    def on_state(state: str, reason: str | None) -> None:
        if state == "connected":
            connected.set()

    stream = api.events(max_retries=2, on_state=on_state)

    async def follow() -> Job:
        async with stream:
            async for event, model in stream:
                if event == "job" and isinstance(model, Job) and model.id == job.id:
                    update(model)
                    if finished(model):
                        return model
        raise AgentClientError("the event stream ended before the job did")

    async def catch_up() -> Job:
        # The job may have ended before the stream was up: one read once it is.
        await connected.wait()
        now = await api.job(job.id)
        update(now)
        if finished(now):
            return now
        await asyncio.Event().wait()  # the stream reports the rest
        raise AssertionError("unreachable")

    tasks = [asyncio.ensure_future(follow()), asyncio.ensure_future(catch_up())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _by_polling(api: Any, job: Job, update: UpdateFn, poll_s: float) -> Job:
    while not finished(job):
        await asyncio.sleep(poll_s)
        job = await api.job(job.id)
        update(job)
    return job
