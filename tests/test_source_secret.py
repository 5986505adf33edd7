"""The camera password stays out of the process list: ``--source-file`` (and config.toml,
``$FIELDTUI_AGENT_SOURCE``) give the source without a command line anyone can read, and a password given
with ``--source`` is warned about."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, _clean_env, _terminate, wait_for_runtime

PASSWORD = "hunter2-camera-pw"
URI = f"rtsp://admin:{PASSWORD}@127.0.0.1:1/stream1"


def serve(tmp_path: Path, tiny_model: Path, *source_args: str, env: dict[str, str] | None = None):
    home = tmp_path / "home"
    args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
    args += ["--port", "0", "--no-mdns", "--model", str(tiny_model), *source_args]
    stderr_path = tmp_path / "agent.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=_clean_env(env), cwd=REPO)
    info = wait_for_runtime(home, proc, stderr_path)
    return proc, info, stderr_path, home


def status_uri(info: dict, home: Path) -> str:
    import httpx

    token = (home / "token").read_text().strip()
    r = httpx.get(info["api_url"] + "/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return r.json()["source"]["uri"]


@pytest.mark.parametrize("how", ["file", "env"])
def test_the_source_without_the_command_line(tmp_path: Path, tiny_model: Path, how: str) -> None:
    if how == "file":
        secret = tmp_path / "source"
        secret.write_text(f"\n{URI}\n")
        secret.chmod(0o600)
        proc, info, stderr_path, home = serve(tmp_path, tiny_model, "--source-file", str(secret))
    else:
        proc, info, stderr_path, home = serve(tmp_path, tiny_model, env={"FIELDTUI_AGENT_SOURCE": URI})
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert PASSWORD not in cmdline
        assert status_uri(info, home) == "rtsp://***@127.0.0.1:1/stream1"  # the source in use
    finally:
        assert _terminate(proc) == 0
    text = stderr_path.read_text() + (home / "agent.log").read_text()
    assert PASSWORD not in text and "process list" not in text


def test_a_password_on_the_command_line_is_warned_about(tmp_path: Path, tiny_model: Path) -> None:
    proc, info, stderr_path, home = serve(tmp_path, tiny_model, "--source", URI)
    _terminate(proc)
    text = stderr_path.read_text()
    assert "process list" in text and "--source-file" in text and PASSWORD not in text


def test_a_missing_or_empty_source_file_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n \n")
    for path, says in ((tmp_path / "nope", "cannot read --source-file"), (tmp_path / "empty", "is empty")):
        done = subprocess.run(
            [sys.executable, "-m", "agent", "run", "--source-file", str(path), "--duration", "1"],
            capture_output=True,
            text=True,
            env=_clean_env(None),
            cwd=REPO,
            timeout=60,
        )
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
