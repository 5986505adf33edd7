"""fieldtui: the technician's console for edge-AI devices (services, CLI and wire protocol).

- ``protocol/``  the wire vocabulary both programs share (pydantic models, the version, the class
                 palette); the only part of this package the agent imports
- ``cli/``       the ``fieldtui`` subcommands; ``cli/main.py`` is the one entry point that opens the TUI
                 (``screens``), imported there and nowhere else in this package
- ``link/``      one device link: the interface, HTTP, SSH, and the HTTP-then-SSH fallback
- ``rollout/``   staged rollouts to many devices: the plan and its state file, the runner that drives waves
- the services beside them (plain asyncio, no Textual): discovery, the agent client and its SSE stream,
  SSH, pairing, push, job following, the saved devices, the demo, the on-site registry
"""

from fieldtui.protocol import __version__

__all__ = ["__version__"]
