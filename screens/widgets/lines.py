"""A widget drawn with Textual's line API from strips built once per change, not once per frame."""

from __future__ import annotations

from textual.strip import Strip
from textual.widget import Widget


class CachedLines(Widget):
    """Subclasses implement ``build(width, height) -> list[Strip]`` and call ``redraw()`` on new data.

    The strips are rebuilt only after ``redraw()``, a resize or a style change (a theme switch), so a
    compositor pass over an unchanged chart or picture costs a list lookup per line.
    """

    _strips: list[Strip] | None = None

    def build(self, width: int, height: int) -> list[Strip]:
        raise NotImplementedError

    def redraw(self) -> None:
        self._strips = None
        self.refresh()

    def on_resize(self) -> None:
        self._strips = None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size
        if self._strips is None or len(self._strips) != height:
            self._strips = self.build(width, height)
        return self._strips[y] if 0 <= y < len(self._strips) else Strip.blank(width, self.rich_style)
