"""A device screen that runs one job at a time on the agent (a benchmark, an engine rebuild).

What both do alike lives here: start the job and follow it from the SSE stream to its end
(:func:`screens.replies.job_reply`), each change a ``JobMoved`` moving the :class:`JobProgress` bar,
``ctrl+x`` cancelling it on the device, and a cancel the agent refuses said in a notification. The
screen says what happens at each change (:meth:`JobScreen.job_moved`) and at the end (its reply's
handler).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from textual import on, work
from textual.message import Message
from textual.screen import Screen

from fieldtui.errors import AgentClientError
from fieldtui.protocol import Job
from screens.replies import Reply, job_reply
from screens.widgets.jobprogress import JobProgress


class JobScreen(Screen[None]):
    JOB_NOUN = "job"  # in the screen's words: "no benchmark is running"
    COALESCE_MOVES = True  # False: every change arrives (a log that keeps every stage)

    class JobMoved(Message):
        """A change of the running job."""

        def __init__(self, job: Job, coalesce: bool = True) -> None:
            super().__init__()
            self.job = job
            self.coalesce = coalesce

        def can_replace(self, message: Message) -> bool:
            return self.coalesce and isinstance(message, JobScreen.JobMoved)

    class CancelRefused(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, api: Any, record: Any, *, job_timeout: float) -> None:
        super().__init__()
        self.api = api
        self.record = record
        self.job_timeout = job_timeout
        self.job: Job | None = None
        self.running = False

    @work(exclusive=True, exit_on_error=False, group="job")
    async def follow_job(self, start: Awaitable[Job], reply: type[Reply[Any]], result: type[Any]) -> None:
        """Start the job (``start``), follow it, and post ``reply`` with its ``result`` or why not."""
        await job_reply(
            self,
            reply,
            self.api,
            start,
            result=result,
            what=self.JOB_NOUN,
            on_update=lambda j: self.post_message(self.JobMoved(j, self.COALESCE_MOVES)),
            timeout=self.job_timeout,
        )

    @on(JobMoved)
    def _job_moved(self, message: JobMoved) -> None:
        self.job = message.job
        self.query_one(JobProgress).moved(message.job)
        self.job_moved(message.job)

    def job_moved(self, job: Job) -> None:
        """A change of the running job, after the progress bar moved (for a screen's own log)."""

    def action_cancel(self) -> None:
        if self.job is None:
            self.notify(f"no {self.JOB_NOUN} is running", timeout=3)
            return
        self.cancel_job(self.job.id)

    @work(exit_on_error=False, group="cancel")
    async def cancel_job(self, job_id: str) -> None:
        try:
            await self.api.cancel_job(job_id)
        except AgentClientError as err:  # it may have ended meanwhile, or the link is down
            self.post_message(self.CancelRefused(str(err)))

    @on(CancelRefused)
    def _cancel_refused(self, message: CancelRefused) -> None:
        self.notify(message.error, title="Could not cancel", severity="error", timeout=10)
