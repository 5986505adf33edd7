"""Class colours shared by the agent's annotated snapshot and the console's per-class counts.

Ultralytics' default palette in its order (class id i gets colour i modulo 20), so a technician who
knows those tools reads the colours the same way, and a square on the camera view has the colour of
the square's bar beside it.
"""

from __future__ import annotations

_HEX = (
    *("FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB"),
    *("2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7"),
)
PALETTE_RGB: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in _HEX
)


def class_rgb(class_id: int) -> tuple[int, int, int]:
    return PALETTE_RGB[int(class_id) % len(PALETTE_RGB)]


def class_hex(class_id: int) -> str:
    return "#" + _HEX[int(class_id) % len(_HEX)]
