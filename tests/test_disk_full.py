"""A full disk on a real, small filesystem (a tmpfs of a few MB mounted for the test, as root).

While serving: every write the API does (settings, an upload, an activation) answers 507 with what to
delete, nothing half-written stays behind, the pipeline keeps running, and health says so. At start on a
full disk: the agent comes up read-only (state.db as a copy in memory, no runtime file) instead of
exiting, with the reason in health and status.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, _clean_env, _terminate

SIZE_MB = 16


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs of SIZE_MB MB, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the full-disk tests use a real filesystem)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounts are not permitted here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; the file to delete to give them back."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (1 << 16))
            f.flush()
    os.statvfs(disk)
    assert os.statvfs(disk).f_bavail == 0
    return ballast


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _problem_507(response: httpx.Response) -> str:
    assert response.status_code == 507, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert "disk is full" in detail and "delete" in detail and "Traceback" not in response.text
    return detail


def test_a_disk_that_fills_while_serving_gets_507s_and_the_agent_keeps_serving(
    start_agent, small_disk: Path, tiny_model: Path
) -> None:
    agent = start_agent(small_disk / "home")
    data = tiny_model.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with agent.client(timeout=30.0) as c:
        c.put("/v1/models/v1", content=data, headers={"X-Model-Sha256": sha}).raise_for_status()
        ballast = fill(small_disk)

        _problem_507(c.put("/v1/forwarding", json={"condition": "anyone there?"}))
        _problem_507(c.put("/v1/models/v2", content=data, headers={"X-Model-Sha256": sha}))
        activate = c.post("/v1/models/v1/activate")
        if activate.status_code == 202:  # the job row fit in SQLite's free pages: the job says why
            job = activate.json()["id"]
            deadline = time.monotonic() + 30
            while c.get(f"/v1/jobs/{job}").json()["state"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
        else:
            _problem_507(activate)

        for method, path in (("POST", "/v1/pipeline/restart"), ("POST", "/v1/benchmarks")):
            r = c.request(method, path, json={} if path.endswith("benchmarks") else None)
            assert r.status_code in (202, 507), (path, r.text)  # a job row SQLite had room for, or 507
            if r.status_code == 507:
                _problem_507(r)

        assert c.get("/v1/forwarding").json()["condition"] != "anyone there?"
        names = {m["version"] for m in c.get("/v1/models").json()["versions"]}
        assert "v2" not in names  # nothing half-written in the store
        assert not list((agent.home / "models").glob(".staging*/*"))
        health = c.get("/v1/health").json()
        assert health["status"] != "ok" and any("disk full" in r for r in health["reasons"]), health
        status = c.get("/v1/status").json()
        assert status["state"] == "running" and "disk full" in status["read_only"]
        assert c.get("/metrics").status_code == 200

        ballast.unlink()
        c.put("/v1/forwarding", json={"condition": "anyone there?"}).raise_for_status()
        assert c.get("/v1/status").json()["read_only"] is None
    assert "Traceback" not in agent.stderr()


def test_the_agent_starts_read_only_on_a_full_disk(start_agent, small_disk: Path, tiny_model: Path) -> None:
    home = small_disk / "home"
    first = start_agent(home)  # a home with token, state.db, a job in its history
    with first.client() as c:
        c.post("/v1/pipeline/restart").raise_for_status()
    assert first.stop() == 0
    ballast = fill(small_disk)

    port = free_port()
    args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
    args += ["--port", str(port), "--no-mdns", "--source", "demo:", "--model", str(tiny_model)]
    stderr_path = small_disk.parent / "agent-full.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=_clean_env(None), cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(url + "/v1/health", timeout=2).json()
                break
            time.sleep(0.2)
        assert health is not None, f"agent did not come up on a full disk:\n{stderr_path.read_text()}"
        assert health["status"] == "degraded" and any(r.startswith("read-only") for r in health["reasons"])
        assert "delete" in health["reasons"][0]
        token = (home / "token").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=20) as c:
            status = c.get("/v1/status").json()
            assert status["read_only"].startswith("read-only") and status["state"] in ("starting", "running")
            jobs = c.get("/v1/jobs").json()["jobs"]
            assert any(j["kind"] == "pipeline.restart" for j in jobs)  # the history on disk, read
            _problem_507(c.put("/v1/forwarding", json={"condition": "anyone there?"}))
        assert not (home / "agent.json").exists()
    finally:
        code = _terminate(proc)
    assert code == 0, stderr_path.read_text()
    text = stderr_path.read_text()
    assert "Traceback" not in text and "Logging error" not in text
    ballast.unlink()
