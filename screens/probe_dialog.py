"""Probe a subnet for agents: for networks where mDNS cannot reach (client isolation, VLANs).

Proposes this laptop's own directly connected subnets (the first one filled in); the technician may
type any other range and extra ports. Ranges are checked by :func:`fieldtui.probe.parse_range` (at most
a /22 here; larger sweeps need ``fieldtui discover --probe CIDR --force``) before the dialog closes with
a :class:`ProbeRequest`; the device list runs the sweep and lists what answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from fieldtui.errors import ConsoleError
from fieldtui.probe import Network, Subnet, own_subnets, parse_ports, parse_range
from fieldtui.protocol import DEFAULT_PORT
from screens.dialogs import FormDialog


@dataclass(frozen=True)
class ProbeRequest:
    networks: list[Network]
    ports: list[int]


def _split(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text.strip()) if part]


class ProbeDialog(FormDialog[ProbeRequest | None]):
    CSS_PATH = "probe_dialog.tcss"

    def __init__(self, subnets: list[Subnet] | None = None) -> None:
        super().__init__()
        self.subnets = own_subnets() if subnets is None else subnets

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Static("Probe a subnet for agents", id="title")
            yield Static(self._proposals(), id="subnets")
            yield Label("Ranges (CIDR, space-separated; at most a /22 each)")
            first = str(self.subnets[0].network) if self.subnets else ""
            yield Input(first, placeholder="10.0.5.0/24", id="ranges")
            yield Label(f"Ports besides {DEFAULT_PORT} (optional)")
            yield Input(placeholder="9000", id="ports")
            yield Static(id="error")
            with Horizontal(id="buttons"):
                yield Button("Probe", variant="primary", id="probe")
                yield Button("Cancel", id="cancel")

    def _proposals(self) -> Text:
        if not self.subnets:
            return Text("This laptop has no subnet besides loopback: join the devices' network first.")
        lines = ["Asks every address for the agent's /v1/health. This laptop's subnets:"]
        lines += [f"  {s.label()}" for s in self.subnets]
        return Text("\n".join(lines))

    @on(Input.Submitted, "#ranges")
    def _next(self) -> None:
        self.query_one("#ports", Input).focus()

    @on(Input.Submitted, "#ports")
    @on(Button.Pressed, "#probe")
    def _submit(self) -> None:
        ranges = _split(self.query_one("#ranges", Input).value)
        try:
            if not ranges:
                raise ConsoleError("type a range to probe, e.g. 10.0.5.0/24")
            larger = "run `fieldtui discover --probe RANGE --force` for a larger one"
            networks = [parse_range(text, larger=larger) for text in ranges]
            ports = parse_ports(_split(self.query_one("#ports", Input).value))
        except ConsoleError as err:
            error = self.query_one("#error", Static)
            error.update(Text(str(err).removeprefix("--probe ").removeprefix("--port "), style="bold"))
            error.add_class("-error")
            return
        self.dismiss(ProbeRequest(networks, ports))
