"""The dashboard's look over SSH while HTTP is down (mixed into :class:`~screens.dashboard.DashboardScreen`).

A device paired over SSH has no event stream while its HTTP API is down, so ``watch_over_ssh`` (worker
group "ssh") reads ``fieldtui-agent status --json`` over SSH every ``SSH_POLL_S``
(:func:`fieldtui.sshwatch.poll_status`); each read arrives as ``LookedOverSSH``, feeds the charts and
says so on the banner and the link badge. The first read brings the log tail too, shown once. ``o``
starts it by hand; the dashboard starts it when the link drops and stops it when HTTP is back.

The handler goes by Textual's naming convention (``on_sshwatch_looked_over_ssh``): ``@on`` only
registers in classes built by Textual's metaclass, and this mixin is not one.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import SystemCommand
from textual.message import Message
from textual.widgets import Static

from screens.panels import link_badge
from screens.timefmt import clock_time
from screens.widgets.banner import LinkBanner
from screens.widgets.camera import CameraView
from screens.widgets.stale import StaleMark


class SSHWatch:
    """Needs the dashboard's ``record``, ``telemetry``, ``device``/``status``/``health``, ``clock()``,
    ``_show_identity()`` and ``_schedule_render()``."""

    SSH_POLL_S = 5.0
    ssh_polls = 0  # statuses read over SSH since HTTP went (bench and tests read it)
    _ssh_first = True

    class LookedOverSSH(Message):
        """The status (the log tail too on the first read) read over SSH while HTTP is down, or the error."""

        def __init__(
            self, status: Any = None, logs: Any = None, error: str | None = None, going_on: bool = True
        ) -> None:
            super().__init__()
            self.status, self.logs, self.error, self.going_on = status, logs, error, going_on

    def _watch_ssh_while_down(self: Any) -> None:
        # No event stream without HTTP: a device paired over SSH is watched through SSH meanwhile.
        if self.record.ssh is not None and not any(
            w.node is self and w.group == "ssh" and not w.is_finished for w in self.workers
        ):
            self._ssh_first = True
            self.watch_over_ssh()

    def action_over_ssh(self: Any) -> None:
        if self.record.ssh is None:
            return
        self.notify(f"reading {self.record.name}'s status over SSH ({self.record.ssh.host})…", timeout=3)
        self._ssh_first = True
        self.watch_over_ssh()

    def action_how_to_pair(self: Any) -> None:
        """``o`` on a device never paired over SSH: there is no SSH link to look through; say how to make one."""
        r = self.record
        self.notify(
            f"{r.name} is not paired over SSH, so there is no SSH link to look through. Pair it with "
            f"`fieldtui pair {r.host}` (add --ssh-user USER if your SSH user differs), or p on the device list.",
            title="Over SSH: not paired",
            severity="warning",
            timeout=20,
        )

    @work(exclusive=True, exit_on_error=False, group="ssh")
    async def watch_over_ssh(self: Any) -> None:
        """While HTTP is down: ``fieldtui-agent status --json`` over SSH every ``SSH_POLL_S``."""
        from fieldtui.sshwatch import poll_status

        await poll_status(
            self.record.ssh,
            self.SSH_POLL_S,
            lambda status, logs: self.post_message(self.LookedOverSSH(status, logs)),
            lambda error, going_on: self.post_message(self.LookedOverSSH(error=error, going_on=going_on)),
        )

    def ssh_commands(self: Any) -> list[SystemCommand]:
        """The palette's "Look over SSH" (for a device not paired over SSH: how to pair it)."""
        if self.record.ssh is None:
            hint = "not paired over SSH: how to pair it, to look through SSH while HTTP is down"
            return [SystemCommand("Look over SSH", hint, self.action_how_to_pair)]
        hint = "read the status through SSH now, then every few seconds"
        return [SystemCommand("Look over SSH", hint, self.action_over_ssh)]

    def _stop_ssh_watch(self: Any) -> None:
        self.workers.cancel_group(self, "ssh")
        self.ssh_polls = 0
        self.query_one("#link", Static).update(link_badge(self.record))

    def on_sshwatch_looked_over_ssh(self: Any, message: SSHWatch.LookedOverSSH) -> None:
        host = self.record.ssh.host if self.record.ssh else "?"
        banner = self.query_one(LinkBanner)
        if message.status is None:
            if self._ssh_first or not message.going_on:
                self.notify(message.error or "", title="Over SSH: failed", severity="error", timeout=15)
            again = "" if message.going_on else " — o to try again"
            banner.set_offer(f"over SSH: {message.error}{again}")
            self._ssh_first = False
            return
        found = message.status
        self.device, self.status, self.health = found.device, found.status, found.health
        sample = found.status.sample
        latest = self.telemetry.latest
        if sample is not None and (latest is None or sample.ts > latest.ts):
            self.telemetry.add(sample)  # the charts go on, a point every poll instead of 2 a second
        self.ssh_polls += 1
        self.query_one(StaleMark).fresh()  # polled over SSH: the figures are live again
        self._show_identity()
        self._schedule_render()
        summary = f"agent {found.health.status}, pipeline {found.status.state}"
        if message.logs is not None and self._ssh_first:
            lines = "\n".join(line.text() for line in message.logs.lines[-5:])
            self.notify(f"{summary}\n{lines}".strip(), title=f"Over SSH ({host})", timeout=20)
        self._ssh_first = False
        stamp = clock_time(self.clock())
        banner.set_offer(f"live over SSH: {summary}, read at {stamp}, every {self.SSH_POLL_S:g} s")
        if self.ssh_polls == 1:
            self.query_one(CameraView).show_message("no camera view over SSH: it needs the HTTP API")
        badge = Text(f" SSH · polled every {self.SSH_POLL_S:g} s ", style="bold black on blue")
        badge.append(f"\n{host}, last read {stamp}", style="dim")
        self.query_one("#link", Static).update(badge)
