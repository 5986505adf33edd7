"""Checkboxes, radio buttons and selection lists whose off state differs by its glyph, not by colour.

Textual draws ``▐X▌`` on and off alike and tells them apart by colour only, which a colour-blind
technician, or anyone in sunlight, cannot read. These draw ``▐✓▌`` / ``▐ ▌`` (checkbox, selection
list) and ``▐●▌`` / ``▐○▌`` (radio button). Screens import the three from here, never from
textual.widgets (tests/test_tui_glance.py checks), so the whole console shows the same marks.
"""

from __future__ import annotations

from typing import TypeVar

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Checkbox as _Checkbox
from textual.widgets import RadioButton as _RadioButton
from textual.widgets import SelectionList as _SelectionList
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist

T = TypeVar("T")

CHECK_ON, CHECK_OFF = "✓", " "
RADIO_ON, RADIO_OFF = "●", "○"


class Checkbox(_Checkbox):
    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name, read by ToggleButton._button
        return CHECK_ON if self.value else CHECK_OFF


class RadioButton(_RadioButton):
    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name, read by ToggleButton._button
        return RADIO_ON if self.value else RADIO_OFF


class SelectionList(_SelectionList[T]):
    """Each line's button as Textual draws it, with the inner glyph saying selected or not."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        if len(segments) < 3 or segments[1].text != ToggleButton.BUTTON_INNER:
            return strip  # a line without a button (past the last option)
        try:
            selection = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return strip
        glyph = CHECK_ON if selection.value in self._selected else CHECK_OFF
        segments[1] = Segment(glyph, segments[1].style)
        return Strip(segments, strip.cell_length)
