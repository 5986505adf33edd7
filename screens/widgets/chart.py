"""A live time-series chart in block characters: one column per sample, newest on the right.

Eighth blocks (``▁▂▃▄▅▆▇█``) give each row eight levels, so a 5-row chart has 40. An optional second
series is drawn behind the first (p95 behind p50: the lighter part of a column is the spread between
them), and an optional alert line is drawn across the plot, with the columns on its wrong side in the
alert colour - the 0.60 confidence line a technician knows from the Prometheus alert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
        rich = self.get_component_rich_style
        base = self.rich_style
        title_style, value_style, scale_style = (
            rich("timechart--title"),
            rich("timechart--value"),
            rich("timechart--scale"),
        )
        front_c, behind_c = rich("timechart--front").color, rich("timechart--behind").color
        alert_c, bad_c = rich("timechart--alert").color, rich("timechart--bad").color
        rows = max(1, height - 1)
        shown = self._front[-width:] if width > 0 else []
        behind = self._behind[-width:] if self._behind is not None and width > 0 else None
        top = self._scale_top(shown, behind)
        pad = width - len(shown)

        # The figures come first: in a narrow terminal the scale gives way to the caption, and only then
        # does the caption itself end in an ellipsis.
        scale = f"max {top:g}{self.unit}"
        wanted = len(self.title) + (2 + len(self.caption) if self.caption else 0)
        if self.caption and wanted + 1 + len(scale) > width:
            scale = ""
        header = Text(no_wrap=True, overflow="ellipsis")
        room = width - len(scale) - (1 if scale else 0)
        if room > 0:
            header.append(self.title, title_style)
            if self.caption:
                header.append("  " + self.caption, value_style)
            header.truncate(room, overflow="ellipsis")
        header.append(" " * max(0, width - header.cell_len - len(scale)))
        header.append(scale, scale_style)
        header.truncate(width)
        strips = [
            Strip(list(header.render(self.app.console))).adjust_cell_length(width, base).apply_style(base)
        ]

        alert_level = _level(self.alert, top, rows) if self.alert is not None else None
        levels = [_level(v, top, rows) for v in shown]
        behind_levels = [_level(v, top, rows) for v in behind] if behind is not None else None
        bad = [self._is_bad(v) for v in shown]
        for row in range(rows - 1, -1, -1):  # top row first
            floor = row * 8
            on_alert_row = alert_level is not None and floor <= alert_level < floor + 8
            segments = [Segment(" " * pad, base)] if pad > 0 else []
            for i, level in enumerate(levels):
                front = max(0, min(8, level - floor))
                back = max(0, min(8, behind_levels[i] - floor)) if behind_levels is not None else 0
                fg = bad_c if bad[i] else front_c
                if front == 8:
                    segments.append(Segment("█", base + Style(color=fg)))
                elif front > 0:
                    bg = behind_c if back > front else None
                    segments.append(Segment(EIGHTHS[front], base + Style(color=fg, bgcolor=bg)))
                elif back > 0:
                    segments.append(Segment(EIGHTHS[back], base + Style(color=behind_c)))
                elif on_alert_row:
                    segments.append(Segment(ALERT_MARK, base + Style(color=alert_c)))
                else:
                    segments.append(Segment(" ", base))
            if on_alert_row and pad > 0:
                segments[0] = Segment(ALERT_MARK * pad, base + Style(color=alert_c))
            strips.append(Strip(Segment.simplify(segments)).adjust_cell_length(width, base))
        return strips
