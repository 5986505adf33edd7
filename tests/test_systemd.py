"""packaging/systemd/fieldtui-agent.service: the directives the agent relies on, then systemd's own checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "packaging" / "systemd" / "fieldtui-agent.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed here (Debian: apt-get install systemd)"
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd keys repeat; an empty value resets a list)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


def test_readiness_watchdog_and_restart(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert int(one(unit, "Service", "WatchdogSec")) >= 10  # the agent pings at half of it
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_state_directory_is_the_agent_home(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Service", "StateDirectory") == "fieldtui-agent"
    assert "FIELDTUI_AGENT_HOME=/var/lib/fieldtui-agent" in unit["Service"]["Environment"]


def test_hardening_without_hiding_cameras_or_accelerators(unit: dict[str, dict[str, list[str]]]) -> None:
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DynamicUser": "yes",
    }.items():
        assert one(unit, "Service", key) == value, key
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert "video" in one(unit, "Service", "SupplementaryGroups").split()
    # /dev/video*, /dev/hailo0, /dev/nvhost-*, /dev/nvmap must stay visible
    assert unit["Service"].get("PrivateDevices", ["no"])[-1] == "no"
    assert unit["Service"].get("DevicePolicy", ["auto"])[-1] == "auto"
    assert "AF_INET" in one(unit, "Service", "RestrictAddressFamilies").split()


def test_exec_start_runs_our_console_script(unit: dict[str, dict[str, list[str]]]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    argv = one(unit, "Service", "ExecStart").split()
    assert Path(argv[0]).is_absolute()
    assert Path(argv[0]).name in scripts
    assert argv[1] == "serve"
    assert argv[argv.index("--port") + 1] == "8470"


def verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on ``text`` saved as fieldtui-agent.service, with ExecStart pointed at
    this venv's fieldtui-agent (verify checks that the program exists and is executable)."""
    exe = Path(sys.executable).parent / "fieldtui-agent"
    assert exe.exists(), f"{exe} missing: pip install -e . in this venv"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={exe}", text, flags=re.M)
    path = tmp_path / "fieldtui-agent.service"
    path.write_text(text)
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    done = verify(UNIT.read_text(), tmp_path)
    assert done.returncode == 0, done.stderr
    # unknown or misspelt keys are only warnings ("Unknown key ..., ignoring"): none allowed
    assert done.stderr.strip() == "", done.stderr


@needs_analyze
def test_verify_catches_a_misspelt_directive(tmp_path: Path) -> None:
    done = verify(UNIT.read_text().replace("ProtectHome=", "ProtectHomes="), tmp_path)
    assert "ProtectHomes" in done.stderr


@needs_analyze
def test_security_exposure_stays_low(tmp_path: Path) -> None:
    verify(UNIT.read_text(), tmp_path)  # writes the rewritten copy
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", str(tmp_path / "fieldtui-agent.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze has no offline security report: {done.stderr.strip()[:200]}")
    # systemd rates 0-10; below 3 is "OK" (2.0 with this unit; PrivateDevices is off on purpose)
    assert float(match.group(1)) < 3.0, done.stdout
