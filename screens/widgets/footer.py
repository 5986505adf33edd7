"""The footer, narrow-terminal aware: at 80 columns the screen's own keys stay in view.

Textual's footer cuts whatever does not fit, and at 80 columns that is the last keys (Benchmark,
Engines, ? Help on the dashboard). Below ``NARROW`` columns (or wider, when a screen's keys still do not fit) this one packs the keys tightly (Textual's
compact style) and leaves out what a technician knows without reading: ``esc`` (back) and the palette's
``^p`` (``:`` opens it too, and help lists both). When even that does not fit (the device list has ten
keys), the last keys give up their words, from the end, so each key stays in view and the first ones
(the screen's main actions) and ``? Help`` keep theirs.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer as _Footer
from textual.widgets._footer import FooterKey

NARROW = 110  # columns


class Footer(_Footer):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._narrow: bool | None = None

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW
        if narrow != self._narrow:
            self._narrow = narrow
            self.compact = narrow
            self.show_command_palette = not narrow
            self.refresh(recompose=True)

    def compose(self) -> ComposeResult:
        widgets = list(super().compose())
        width = self.size.width or self.app.size.width
        keys = [w for w in widgets if isinstance(w, FooterKey)]
        # Wide enough in columns, but not for this screen's keys (the device list's, with ^p): pack them.
        narrow = self._narrow or sum(_cells(k) + 1 for k in keys) > width  # key padding 0 1
        if not narrow:
            yield from widgets
            return
        self.compact = True
        widgets = [
            w
            for w in widgets
            if not (isinstance(w, FooterKey) and (w.key == "escape" or w.has_class("-command-palette")))
        ]
        keys = [w for w in widgets if isinstance(w, FooterKey)]
        used = sum(_cells(k) for k in keys)
        for key in reversed(keys):
            if used <= width:
                break
            if key.key != "question_mark" and key.description:
                used -= len(key.description) + 1
                key.description = ""
        yield from widgets


def _cells(key: FooterKey) -> int:
    """Columns a compact footer key takes: its key, a space and its words, a space."""
    return len(key.key_display) + 1 + (len(key.description) + 1 if key.description else 0)
