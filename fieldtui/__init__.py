"""fieldtui: the technician's console for edge-AI devices (services, CLI and wire protocol)."""

__version__ = "0.1.0"
