"""The dashboard's camera strip: every camera of a multi-camera device on one line, the selected one
marked, each with its FPS, confidence and a health badge that reads without colour (a glyph and a word:
``✓ ok``, ``⚠ check``, ``✗ down``, ``… starting``, ``– off``).

The screen sets what it shows (``show``): the agent's camera list, the newest sample of each camera (SSE
``camera`` events are fresher than the list) and which one is selected. Hidden for a one-camera device.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from fieldtui.protocol import CameraStatus, Sample
from fieldtui.protocol.cameras import camera_verdict

BADGES = {
    "ok": ("✓ ok", "green"),
    "check": ("⚠ check", "yellow"),
    "down": ("✗ down", "bold red"),
    "starting": ("… starting", "yellow"),
    "off": ("– off", "dim"),
}


def badge(camera: CameraStatus, sample: Sample | None = None) -> Text:
    word, style = BADGES[camera_verdict(camera, sample)]
    return Text(word, style=style)


def camera_cell(camera: CameraStatus, sample: Sample | None, selected: bool) -> Text:
    """``▸ front 5.0 fps 0.82 ✓ ok``: the name (bold and marked when selected), FPS, confidence, badge."""
    s = sample or camera.sample
    text = Text("▸ " if selected else "  ", style="bold")
    text.append(camera.name, style="bold reverse" if selected else "bold")
    if camera.enabled and s is not None:
        conf = "-" if s.confidence_avg is None else f"{s.confidence_avg:.2f}"
        text.append(f" {s.fps:.1f} fps conf {conf} ")
    else:
        text.append(" ")
    return text.append_text(badge(camera, sample))


SEPARATOR = Text("  │ ", style="dim")


def strip_text(
    cameras: list[CameraStatus], samples: dict[str, Sample], selected: str | None, width: int = 0
) -> Text:
    """The cells on one line, or over several of at most ``width`` cells, breaking between cameras only
    (a badge is never split from its camera)."""
    lines: list[Text] = []
    for cell in (camera_cell(c, samples.get(c.name), c.name == selected) for c in cameras):
        if lines and (not width or lines[-1].cell_len + SEPARATOR.cell_len + cell.cell_len <= width):
            lines[-1] = Text.assemble(lines[-1], SEPARATOR, cell)
        else:
            lines.append(cell)
    return Text("\n").join(lines)


class CameraStrip(Static):
    DEFAULT_CSS = """
    CameraStrip {
        height: auto;
        max-height: 3;
        padding: 0 1;
        display: none;
    }
    """

    _shown: tuple[list[CameraStatus], dict[str, Sample], str | None] = ([], {}, None)

    def show(self, cameras: list[CameraStatus], samples: dict[str, Sample], selected: str | None) -> None:
        self.display = len(cameras) > 1
        self._shown = (cameras, samples, selected)
        if self.display:
            self.update(strip_text(cameras, samples, selected, self.content_size.width))

    def on_resize(self) -> None:
        if self.display:
            self.update(strip_text(*self._shown, self.content_size.width))
