"""The agent-side commands the SSH path reads: ``fieldtui-agent logs`` and ``home`` (``status`` runs end to
end in tests/test_ssh.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.cli.status import tail_log_file
from fieldtui.protocol import AgentPaths, LogPage

REPO = Path(__file__).resolve().parent.parent


def test_log_tail_keeps_continuation_lines_with_their_record(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text(
        "2026-11-27 10:38:54,123 INFO fieldtui.agent.server: starting\n"
        "2026-11-27 10:38:55,250 ERROR fieldtui.agent.models: activation of v2 failed\n"
        "Traceback (most recent call last):\n"
        "  ModelError: no frames\n"
        "2026-11-27 10:38:56,000 WARNING fieldtui.agent.health: camera dark\n"
    )
    page = tail_log_file(log, 2)
    assert [line.level for line in page.lines] == ["ERROR", "WARNING"]
    assert page.lines[0].message.endswith("\nTraceback (most recent call last):\n  ModelError: no frames")
    assert page.lines[1].ts - page.lines[0].ts == 0.75


def test_logs_and_home_print_their_protocol_documents(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "agent.log").write_text(
        "2026-11-27 10:38:54,123 INFO fieldtui.agent: token=abc hidden upstream\n"
    )

    def agent(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "agent", *args, "--home", str(home), "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=True,
        )
        return out.stdout

    assert LogPage.model_validate_json(agent("logs", "--lines", "5")).lines[0].logger == "fieldtui.agent"
    paths = AgentPaths.model_validate(json.loads(agent("home")))
    assert paths.staging == str(home / "models" / ".staging") and paths.running is False
