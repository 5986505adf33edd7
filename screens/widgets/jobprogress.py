"""One line for a long job on the device: what it is doing, and a bar while it runs.

The benchmark and engines screens set it from their handlers (attributes down): ``idle(text)`` for a
hint, ``start(text)`` when a job is submitted, ``moved(job)`` on each SSE job change, ``done(text)`` or
``failed(text)`` at the end.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

from fieldtui.protocol import Job


class JobProgress(Horizontal):
    DEFAULT_CSS = """
    JobProgress {
        height: 1;
        padding: 0 1;
    }
    JobProgress > Static {
        width: 1fr;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    JobProgress > ProgressBar {
        width: auto;
        display: none;
    }
    JobProgress.-running > ProgressBar {
        display: block;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static(classes="stage")
        yield ProgressBar(total=100, show_eta=False)

    @property
    def text(self) -> str:
        return str(self.query_one(Static).render())

    def idle(self, text: str) -> None:
        self.remove_class("-running")
        self.query_one(Static).update(Text(text, style="dim"))

    def start(self, text: str) -> None:
        self.add_class("-running")
        self.query_one(ProgressBar).update(total=100, progress=0)
        self.query_one(Static).update(text)

    def moved(self, job: Job) -> None:
        self.query_one(ProgressBar).update(total=100, progress=round(job.progress * 100))
        self.query_one(Static).update(job.stage or job.state)

    def done(self, text: str) -> None:
        self.remove_class("-running")
        self.query_one(Static).update(Text(f"✓ {text}", style="green"))

    def failed(self, text: str) -> None:
        self.remove_class("-running")
        self.query_one(Static).update(Text(f"✗ {text}", style="red"))
