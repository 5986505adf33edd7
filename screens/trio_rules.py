"""Edit Trio's forwarding rules: one field per rule, checked by the protocol model before saving."""

from __future__ import annotations

from pydantic import ValidationError
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from fieldtui.protocol import ForwardingRules

FIELDS = [  # (field, label, hint)
    ("classes", "classes", "comma-separated class names; empty: every class"),
    ("min_confidence", "min confidence", "0 to 1"),
    ("cooldown_s", "cooldown (s)", "per class, after a forward"),
    ("rate_per_minute", "rate a minute", "global limit"),
    ("burst", "burst", "1 to 100"),
    ("redact_classes", "redact", "classes blurred before a frame leaves the device"),
]
LISTS = ("classes", "redact_classes")


class RulesDialog(ModalScreen["ForwardingRules | None"]):
    CSS_PATH = "trio_rules.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, rules: ForwardingRules) -> None:
        super().__init__()
        self.rules = rules

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("Forwarding rules", style="bold"), classes="question")
            for name, label, hint in FIELDS:
                value = getattr(self.rules, name)
                text = (
                    ", ".join(value)
                    if name in LISTS
                    else f"{value:g}"
                    if isinstance(value, float)
                    else str(value)
                )
                with Horizontal(classes="row"):
                    yield Label(label, classes="label")
                    yield Input(text, placeholder=hint, id=name)
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("Save (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#classes", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        doc: dict[str, object] = {"cameras": list(self.rules.cameras)}  # not edited here: kept as they were
        for name, _, _ in FIELDS:
            raw = self.query_one(f"#{name}", Input).value.strip()
            if name in LISTS:
                doc[name] = [c.strip() for c in raw.split(",") if c.strip()]
            elif raw:
                doc[name] = raw
        try:
            rules = ForwardingRules.model_validate(doc)
        except ValidationError as err:
            first = err.errors()[0]
            label = dict((f, lab) for f, lab, _ in FIELDS).get(str(first["loc"][0]), first["loc"][0])
            self.query_one("#error", Static).update(Text(f"{label}: {first['msg']}", style="red"))
            return
        self.dismiss(rules)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
