"""Pictures in a plain terminal: two pixels per cell with the upper half block (``▀``).

The cell's foreground colour paints the upper pixel and its background the lower one, so a 50x19 cell
area shows a 50x38 pixel image in any 24-bit-colour terminal, with no graphics protocol. Decoding is
Pillow's (imported inside, and run in a worker thread: a JPEG decode must not stall the UI).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from screens.widgets.lines import CachedLines

UPPER_HALF = "▀"


@dataclass(frozen=True)
class Picture:
    """RGB pixels, ``width`` x ``height`` (height even: two pixel rows per cell row)."""

    width: int
    height: int
    rgb: bytes

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * 3
        return self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]


def fit(width: int, height: int, cols: int, rows: int) -> tuple[int, int]:
    """The largest size with ``width:height``'s aspect that fits ``cols`` x ``2*rows`` square pixels."""
    if width <= 0 or height <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / width, 2 * rows / height)
    w = max(1, min(cols, round(width * scale)))
    h = max(2, min(2 * rows, round(height * scale / 2) * 2))
    return w, h


def decode_picture(data: bytes, cols: int, rows: int) -> Picture:
    """Decode an image (JPEG, PNG...) and scale it to fit ``cols`` x ``rows`` cells. Raises ValueError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            w, h = fit(image.width, image.height, cols, rows)
            if w == 0:
                return Picture(0, 0, b"")
            small = image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return Picture(w, h, small.tobytes())
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"not a picture the console can show ({err})") from None


@lru_cache(maxsize=8192)
def _cell_style(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Style:
    return Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))


class HalfBlockImage(CachedLines):
    """Shows a :class:`Picture` centred, or a one-line message (``show_message``) when there is none."""

    DEFAULT_CSS = """
    HalfBlockImage {
        height: 1fr;
        width: 1fr;
        color: $text-muted;
    }
    HalfBlockImage.-stale { opacity: 60%; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.picture: Picture | None = None
        self.message = ""

    def show(self, picture: Picture) -> None:
        self.picture = picture
        self.message = ""
        self.remove_class("-stale")
        self.redraw()

    def show_message(self, message: str, *, keep_picture: bool = True) -> None:
        """A note under a kept (dimmed) picture, or instead of it."""
        self.message = message
        if not keep_picture:
            self.picture = None
        self.set_class(self.picture is not None, "-stale")
        self.redraw()

    def build(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        strips = [Strip.blank(width, base) for _ in range(height)]
        pic = self.picture
        if pic is not None and pic.width and pic.height:
            rows = min(height, pic.height // 2)
            left = max(0, (width - pic.width) // 2)
            top = max(0, (height - rows) // 2)
            for r in range(rows):
                segments = [Segment(" " * left, base)] if left else []
                for x in range(min(pic.width, width)):
                    style = _cell_style(pic.pixel(x, 2 * r), pic.pixel(x, 2 * r + 1))
                    segments.append(Segment(UPPER_HALF, style))
                strips[top + r] = Strip(Segment.simplify(segments)).adjust_cell_length(width, base)
        if self.message and height:
            text = Text(self.message, style=base, no_wrap=True, overflow="ellipsis")
            text.truncate(width, overflow="ellipsis")
            text.align("center", width)
            row = height - 1 if pic is not None else height // 2
            strips[row] = (
                Strip(list(text.render(self.app.console))).adjust_cell_length(width, base).apply_style(base)
            )
        return strips
