"""``?``: every key, by screen, read from the screens' own bindings so it can never go stale."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def key_rows(app: App, bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(keys as the footer shows them, what they do) for every binding with a description."""
    rows = []
    for b in bindings:
        binding = b if isinstance(b, Binding) else Binding(*b)
        if not binding.description:
            continue
        keys = [
            Binding(k.strip(), binding.action, key_display=binding.key_display)
            for k in binding.key.split(",")
        ]
        rows.append((", ".join(dict.fromkeys(app.get_key_display(k) for k in keys)), binding.description))
    return rows


def key_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(
        title=Text(title, style="bold"), title_justify="left", show_header=False, box=None, expand=True
    )
    table.add_column("key", style="bold cyan", width=16, no_wrap=True)
    table.add_column("what", ratio=1)
    for key, what in rows:
        table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, sections: list[tuple[str, Iterable[BindingType], Iterable[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("Keys, by screen  (esc closes)", style="bold"), id="help-title")
            for title, bindings, extra in self.sections:
                rows = [*key_rows(self.app, bindings), *extra]
                yield Static(key_table(title, rows), classes="section")
