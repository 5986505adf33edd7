"""fieldtui-agent: the headless on-device agent (camera -> detector loop, control API, model store)."""

from fieldtui.protocol import __version__

__all__ = ["__version__"]
