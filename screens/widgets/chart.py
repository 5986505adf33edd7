"""A live time-series chart in block characters: one column per sample, newest on the right.

Eighth blocks (``▁▂▃▄▅▆▇█``) give each row eight levels, so a 5-row chart has 40. An optional second
series is drawn behind the first (p95 behind p50: the lighter part of a column is the spread between
them), and an optional alert line is drawn across the plot, with the columns on its wrong side in the
alert colour - the 0.60 confidence line a technician knows from the Prometheus alert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from screens.widgets.lines import CachedLines

EIGHTHS = " ▁▂▃▄▅▆▇█"
ALERT_MARK = "╌"


def nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least ``value`` (a scale a person reads at a glance)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * 10**exp >= value * (1 - 1e-9):
            return step * 10**exp
    return 10.0 ** (exp + 1)


def _level(value: float | None, top: float, cells: int) -> int:
    """Height of ``value`` in eighths of a row (0..cells*8)."""
    if value is None or top <= 0 or not math.isfinite(value):
        return 0
    return max(0, min(cells * 8, round(value / top * cells * 8)))


class TimeChart(CachedLines):
    """``chart.plot(values, behind=None, caption="...")``: redraw with new data.

    ``top`` fixes the scale (e.g. 1.0 for a ratio); without it the scale follows the data.
    ``alert`` draws a line at that value; ``alert_below`` says which side is bad.
    """

    DEFAULT_CSS = """
    TimeChart {
        height: 6;
        padding: 0 1;
    }
    TimeChart > .timechart--title { text-style: bold; }
    TimeChart > .timechart--value { color: $text; }
    TimeChart > .timechart--scale { color: $text-muted; }
    TimeChart > .timechart--front { color: $success; }
    TimeChart > .timechart--behind { color: $success-darken-3; }
    TimeChart > .timechart--alert { color: $warning; }
    TimeChart > .timechart--bad { color: $error; }
    """
    COMPONENT_CLASSES = {
        "timechart--title",
        "timechart--value",
        "timechart--scale",
        "timechart--front",
        "timechart--behind",
        "timechart--alert",
        "timechart--bad",
    }

    def __init__(
        self,
        title: str,
        *,
        unit: str = "",
        top: float | None = None,
        alert: float | None = None,
        alert_below: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.title = title
        self.unit = unit
        self.top = top
        self.alert = alert
        self.alert_below = alert_below
        self.caption = ""
        self._front: list[float | None] = []
        self._behind: list[float | None] | None = None
        self._styles_key: object = None

    @property
    def points(self) -> int:
        """How many samples the chart holds now."""
        return len(self._front)

    def plot(
        self, values: Sequence[float | None], behind: Sequence[float | None] | None = None, caption: str = ""
    ) -> None:
        self._front = list(values)
        self._behind = list(behind) if behind is not None else None
        self.caption = caption
        self.redraw()

    def _scale_top(self, shown: list[float | None], behind: list[float | None] | None) -> float:
        if self.top is not None:
            return self.top
        values = [v for v in shown if v is not None] + [v for v in behind or [] if v is not None]
        if self.alert is not None:
            values.append(self.alert)
        return nice_ceiling(max(values, default=0.0) * 1.1 or 1.0)

    def _is_bad(self, value: float | None) -> bool:
        if value is None or self.alert is None:
            return False
        return value < self.alert if self.alert_below else value > self.alert

    def build(self, width: int, height: int) -> list[Strip]:
        rows = max(1, height - 1)
        shown = self._front[-width:] if width > 0 else []
        behind = self._behind[-width:] if self._behind is not None and width > 0 else None
        top = self._scale_top(shown, behind)
        colours = _Colours.of(self)
        columns = [
            _Column(
                _level(v, top, rows),
                _level(behind[i], top, rows) if behind is not None else 0,
                colours.bad if self._is_bad(v) else colours.front,
            )
            for i, v in enumerate(shown)
        ]
        alert_level = _level(self.alert, top, rows) if self.alert is not None else None
        strips = [self._header(width, top)]
        for row in range(rows - 1, -1, -1):  # top row first
            strips.append(self._row(row, columns, width - len(shown), alert_level, width, colours))
        return strips

    def _header(self, width: int, top: float) -> Strip:
        """Title, caption and scale on one line. The figures come first: in a narrow terminal the scale
        gives way to the caption, and only then does the caption itself end in an ellipsis."""
        base = self.rich_style
        scale = f"max {top:g}{self.unit}"
        wanted = len(self.title) + (2 + len(self.caption) if self.caption else 0)
        if self.caption and wanted + 1 + len(scale) > width:
            scale = ""
        header = Text(no_wrap=True, overflow="ellipsis")
        room = width - len(scale) - (1 if scale else 0)
        if room > 0:
            header.append(self.title, self.get_component_rich_style("timechart--title"))
            if self.caption:
                header.append("  " + self.caption, self.get_component_rich_style("timechart--value"))
            header.truncate(room, overflow="ellipsis")
        header.append(" " * max(0, width - header.cell_len - len(scale)))
        header.append(scale, self.get_component_rich_style("timechart--scale"))
        header.truncate(width)
        return Strip(list(header.render(self.app.console))).adjust_cell_length(width, base).apply_style(base)

    def _row(
        self,
        row: int,
        columns: list[_Column],
        pad: int,
        alert_level: int | None,
        width: int,
        colours: _Colours,
    ) -> Strip:
        """Plot row ``row`` (0 at the bottom): each column's eighth block, the spread behind it, or the
        alert line where the column does not reach."""
        base = self.rich_style
        floor = row * 8
        on_alert_row = alert_level is not None and floor <= alert_level < floor + 8
        alert = Segment(ALERT_MARK, base + Style(color=colours.alert))
        segments = [Segment(" " * pad, base)] if pad > 0 else []
        if on_alert_row and pad > 0:
            segments = [Segment(ALERT_MARK * pad, alert.style)]
        for column in columns:
            segments.append(
                column.cell(floor, base, colours.behind) or (alert if on_alert_row else Segment(" ", base))
            )
        return Strip(Segment.simplify(segments)).adjust_cell_length(width, base)


@dataclass(frozen=True, slots=True)
class _Colours:
    front: Color | None
    behind: Color | None
    alert: Color | None
    bad: Color | None

    @classmethod
    def of(cls, chart: TimeChart) -> _Colours:
        rich = chart.get_component_rich_style
        return cls(
            rich("timechart--front").color,
            rich("timechart--behind").color,
            rich("timechart--alert").color,
            rich("timechart--bad").color,
        )


@dataclass(frozen=True, slots=True)
class _Column:
    level: int  # eighths of a row, from the bottom
    behind: int  # the second series' level (0: none)
    colour: Color | None  # front colour: the alert colour on the wrong side of the alert line

    def cell(self, floor: int, base: Style, behind_colour: Color | None) -> Segment | None:
        """This column's character in the row starting at ``floor`` eighths; None where it is empty."""
        front = max(0, min(8, self.level - floor))
        back = max(0, min(8, self.behind - floor))
        if front == 8:
            return Segment("█", base + Style(color=self.colour))
        if front > 0:
            bg = behind_colour if back > front else None
            return Segment(EIGHTHS[front], base + Style(color=self.colour, bgcolor=bg))
        if back > 0:
            return Segment(EIGHTHS[back], base + Style(color=behind_colour))
        return None
