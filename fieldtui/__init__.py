"""fieldtui: the technician's console for edge-AI devices (services, CLI and wire protocol)."""

from fieldtui.protocol import __version__

__all__ = ["__version__"]
