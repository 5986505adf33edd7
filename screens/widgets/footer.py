"""The footer, narrow-terminal aware: at 80 columns the screen's own keys stay in view.

Textual's footer cuts whatever does not fit, and at 80 columns that is the last keys (Benchmark,
Engines, ? Help on the dashboard). Below ``NARROW`` columns this one packs the keys tightly (Textual's
compact style) and leaves out what a technician knows without reading: ``esc`` (back) and the palette's
``^p`` (``:`` opens it too, and help lists both).
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
        for widget in super().compose():
            if self._narrow and isinstance(widget, FooterKey) and widget.key == "escape":
                continue
            yield widget
