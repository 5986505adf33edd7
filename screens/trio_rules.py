"""Edit Trio's forwarding rules: one field per rule, checked by the protocol model, then by the agent.

The dialog saves through the ``save`` coroutine it is given (``PUT /v1/forwarding``) and stays open on a
refusal, the agent's line under the fields (a class the model does not detect: the model's classes), so
nothing typed is lost; it is dismissed with the saved :class:`ForwardingState`, or None on cancel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from fieldtui.errors import AgentClientError
from fieldtui.protocol import ForwardingRules, ForwardingState, ForwardingUpdate

Save = Callable[[ForwardingUpdate], Awaitable[ForwardingState]]

FIELDS = [  # (field, label, hint)
    ("classes", "classes", "comma-separated class names; empty: every class"),
    ("min_confidence", "min confidence", "0 to 1"),
    ("cooldown_s", "cooldown (s)", "per class, after a forward"),
    ("rate_per_minute", "rate a minute", "global limit"),
    ("burst", "burst", "1 to 100"),
    ("redact_classes", "redact", "classes blurred before a frame leaves the device"),
]
LISTS = ("classes", "redact_classes")


class SavingDialog(ModalScreen["ForwardingState | None"]):
    """A Trio form that saves itself: :meth:`save` sends the update; a refusal shows in ``#error``."""

    CSS_PATH = "trio_rules.tcss"

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class Saved(Message):
        def __init__(self, state: ForwardingState | None, error: str | None = None) -> None:
            super().__init__()
            self.state, self.error = state, error

    def __init__(self, save: Save) -> None:
        super().__init__()
        self._save = save
        self.saving = False

    def refuse(self, line: str) -> None:
        self.query_one("#error", Static).update(Text(line, style="red"))

    def save(self, update: ForwardingUpdate) -> None:
        if self.saving:
            return
        self.saving = True
        self.query_one("#error", Static).update(Text("saving…", style="dim"))
        self._send(update)

    @work(exclusive=True, exit_on_error=False, group="write")
    async def _send(self, update: ForwardingUpdate) -> None:
        try:
            self.post_message(self.Saved(await self._save(update)))
        except AgentClientError as err:
            self.post_message(self.Saved(None, str(err)))

    @on(Saved)
    def _saved(self, message: Saved) -> None:
        self.saving = False
        if message.state is None:
            self.refuse(f"✗ not saved: {message.error}")
            return
        self.dismiss(message.state)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class RulesDialog(SavingDialog):
    def __init__(self, rules: ForwardingRules, save: Save) -> None:
        super().__init__(save)
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
            self.refuse(f"{label}: {first['msg']}")
            return
        if rules == self.rules:
            self.dismiss(None)
            return
        self.save(ForwardingUpdate(rules=rules))  # the agent checks the classes against its model
