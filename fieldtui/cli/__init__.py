"""``fieldtui``: the console's command line (main.py parses, one module per group of subcommands).

The entry point checks first that the console's libraries are installed: a device installs only
``fieldtui[agent]``, and ``fieldtui`` there says what to install instead of failing on an import.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

CONSOLE_LIBRARIES = ("textual", "asyncssh", "zeroconf", "PIL")


def main(argv: Sequence[str] | None = None) -> int:
    missing = [name for name in CONSOLE_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(
            f"fieldtui: the console's libraries are not installed ({', '.join(missing)}): "
            "pip install 'fieldtui[console]' (on a device, the agent is `fieldtui-agent`)\n"
        )
        return 2
    from fieldtui.cli.main import main as run

    return run(argv)
