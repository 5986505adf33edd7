"""Horizontal bars, one per class, in the class's colour (the same one the camera view draws)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import Static

from fieldtui.protocol.palette import class_hex

BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int) -> str:
    """A bar ``fraction`` (0..1) of ``width`` cells long, in eighths of a cell."""
    eighths = max(0, min(width * 8, round(fraction * width * 8)))
    full, part = divmod(eighths, 8)
    return "█" * full + (BLOCKS[part] if part else "")


class CountBars(Static):
    """``bars.counts(counts, names)``: detections per class in the window, every known class listed."""

    DEFAULT_CSS = """
    CountBars { height: auto; }
    """

    def counts(self, counts: Mapping[str, int], names: Mapping[int, str] | None = None) -> None:
        # Every class of the model has a row, even at zero: a class that vanished is news.
        ids = {name: cid for cid, name in (names or {}).items()}
        order = list(dict.fromkeys([*(names or {}).values(), *sorted(counts)]))
        if not order:
            self.update(Text("no detections yet", style="dim"))
            return
        label_w = min(14, max(len(n) for n in order))
        number_w = max(3, max((len(str(v)) for v in counts.values()), default=1))
        width = max(4, (self.content_size.width or 40) - label_w - number_w - 2)
        top = max(counts.values(), default=0) or 1
        text = Text(no_wrap=True, overflow="crop")
        for i, name in enumerate(order):
            n = counts.get(name, 0)
            color = class_hex(ids.get(name, i))
            text.append(f"{name[:label_w]:<{label_w}} ", style="bold" if n else "dim")
            text.append(f"{n:>{number_w}} ", style="" if n else "dim")
            text.append(bar(n / top, width), style=color)
            if i < len(order) - 1:
                text.append("\n")
        self.update(text)
