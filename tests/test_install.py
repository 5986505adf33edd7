"""What each install brings: a device installs ``fieldtui[agent]`` and gets none of the console's
libraries; the laptop installs ``fieldtui[console]``; ``fieldtui`` without them says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {
        r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for r in requirements
    }


def test_a_device_install_brings_none_of_the_console_libraries():
    device = _names(PROJECT["dependencies"]) | _names(PROJECT["optional-dependencies"]["agent"])
    console_only = _names(PROJECT["optional-dependencies"]["console"]) - {"zeroconf"}  # both advertise/browse
    assert console_only == {"textual", "asyncssh", "pillow"}
    assert device.isdisjoint(console_only)


def test_the_agent_runs_without_the_console_libraries():
    """Every agent module imports with textual, asyncssh and Pillow absent (None in sys.modules)."""
    code = (
        "import sys, pkgutil, importlib\n"
        "for name in ('textual', 'asyncssh', 'PIL'): sys.modules[name] = None\n"
        "import agent\n"
        "for m in pkgutil.walk_packages(agent.__path__, 'agent.'):\n"
        "    if m.name != 'agent.__main__': importlib.import_module(m.name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_fieldtui_without_the_console_libraries_says_what_to_install():
    code = (
        "import sys; sys.modules['textual'] = None\nfrom fieldtui.cli import main\nsys.exit(main(['--help']))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "fieldtui: the console's libraries are not installed (textual): "
        "pip install 'fieldtui[console]' (on a device, the agent is `fieldtui-agent`)"
    )
    assert "Traceback" not in done.stderr
