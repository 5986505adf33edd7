"""Pull mode: ``fieldtui registry serve DIR`` (and a plain static web server) as the registry, agents on
127.0.0.1 polling it, downloading through the store's upload path and activating what it offers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fieldtui.protocol import RegistryOffer
from fieldtui.registry import ModelFolder, RegistryServer
from tests import storemodels as sm
from tests.storeclient import listing, wait_for

REPO = Path(__file__).resolve().parent.parent
SOURCE = "demo:?fps=20&size=160x120"


@contextlib.contextmanager
def registry(folder: Path | ModelFolder) -> Iterator[str]:
    """``RegistryServer`` on 127.0.0.1 in a thread with its own event loop; yields its URL."""
    loop = asyncio.new_event_loop()
    models = folder if isinstance(folder, ModelFolder) else ModelFolder(folder)
    server = RegistryServer(models, "127.0.0.1", 0)
    port = loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def static_site(site: Path, offer: dict) -> Iterator[str]:
    """A plain web server (the standard library's) serving ``site`` with ``offer`` as its ``latest`` file."""
    (site / "latest").write_text(json.dumps(offer))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()


def age(path: Path, seconds_ago: float) -> Path:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "registry"
    age(sm.detector(path / "v1.onnx", seed=1), 60)
    return path


def pulling_agent(inproc_agent, tmp_path, url: str, **extra):
    home = tmp_path / "pull-home"
    home.mkdir(mode=0o700)
    settings = {
        "registry": url,
        "registry_poll_s": 0.3,
        "probation_s": 1.0,
        "probation_min_frames": 3,
        **extra,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    (home / "config.toml").write_text(f"[models]\n{body}\n")
    return inproc_agent(home, source=SOURCE)


def test_the_folder_offers_the_newest_model_unless_a_version_is_pinned(folder):
    age(sm.detector(folder / "v2.onnx", seed=2), 30)
    (folder / "not a version!.onnx").write_bytes(b"x")
    (folder / "notes.txt").write_text("not a model")
    models = ModelFolder(folder)
    assert sorted(models.models()) == ["v1", "v2"]
    offer = models.offer("dev1")
    assert (offer.version, offer.download_url, offer.sha256) == (
        "v2",
        "models/v2.onnx",
        sm.sha256(folder / "v2.onnx"),
    )
    (folder / "latest").write_text("v1\n")
    assert models.offer("dev1").version == "v1"
    (folder / "devices").mkdir()
    (folder / "devices" / "dev2").write_text("v2")
    assert models.offer("dev2").version == "v2" and models.offer("dev1").version == "v1"
    (folder / "latest").write_text("v9")
    assert models.offer("dev1") is None
    assert models.file("../registry/v1.onnx") is None and models.file("v1.onnx") == folder / "v1.onnx"


def test_the_registry_answers_latest_and_serves_the_files(folder):
    with registry(folder) as url:
        r = httpx.get(f"{url}/latest", params={"device_id": "abc"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        offer = RegistryOffer.model_validate_json(r.content)
        assert offer.version == "v1" and offer.size == (folder / "v1.onnx").stat().st_size
        got = httpx.get(f"{url}/{offer.download_url}")
        assert got.status_code == 200 and got.content == (folder / "v1.onnx").read_bytes()
        head = httpx.head(f"{url}/models/v1.onnx")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == offer.size
        assert httpx.get(f"{url}/models/..%2Fv1.onnx").status_code == 404
        assert httpx.get(f"{url}/elsewhere").json()["detail"].startswith("no /elsewhere here")
        assert httpx.post(f"{url}/latest").status_code == 405


def test_an_agent_pulls_activates_and_does_not_retry_a_model_that_was_rolled_back(
    folder, inproc_agent, tmp_path
):
    with registry(folder) as url:
        agent = pulling_agent(inproc_agent, tmp_path, url)
        with agent.client() as c:
            first = wait_for(lambda: (m := listing(c)).serving.version == "v1" and m)
            assert first.versions[0].manifest.source == f"registry {url}"
            age(sm.detector(folder / "v2.onnx", seed=2), 0)
            wait_for(lambda: listing(c).serving.version == "v2")
            wait_for(lambda: listing(c).history[0].outcome == "good")  # v2 proven
            sm.detector(folder / "weak.onnx", seed=3, score=0.27)
            (folder / "latest").write_text("weak")
            poller = agent.service.models.poller
            wait_for(lambda: poller.last == "weak rolled back before; not retried", timeout=60)
            models = listing(c)
            assert models.serving.version == "v2"
            weak = [h for h in models.history if h.version == "weak" and h.action == "activate"]
            assert len(weak) == 1 and "confidence collapsed" in weak[0].reason
            jobs = [j for j in c.get("/v1/jobs").json()["jobs"] if j["kind"] == "model.activate"]
            assert [j["params"]["version"] for j in jobs] == ["weak", "v2", "v1"]  # each tried once
            assert jobs[0]["params"]["reason"] == f"update from registry {url}"


def test_a_static_web_server_can_be_the_registry(folder, inproc_agent, tmp_path):
    site = tmp_path / "site"
    (site / "files").mkdir(parents=True)
    (site / "files" / "v1.onnx").write_bytes((folder / "v1.onnx").read_bytes())
    offer = {"version": "v1", "download_url": "files/v1.onnx", "sha256": sm.sha256(folder / "v1.onnx")}
    with static_site(site, offer) as url:
        agent = pulling_agent(inproc_agent, tmp_path, url)
        with agent.client() as c:
            wait_for(lambda: listing(c).serving.version == "v1")


def test_a_registry_that_lies_about_the_hash_changes_nothing(folder, inproc_agent, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "v1.onnx").write_bytes((folder / "v1.onnx").read_bytes())
    with static_site(site, {"version": "v1", "download_url": "v1.onnx", "sha256": "12" * 32}) as url:
        agent = pulling_agent(inproc_agent, tmp_path, url)
        poller = agent.service.models.poller
        wait_for(lambda: poller.last and "sha256 mismatch" in poller.last)
        assert f"expected {'12' * 32}" in poller.last
        with agent.client() as c:
            models = listing(c)
        assert models.versions == [] and models.serving.version is None


def test_registry_serve_command(folder):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fieldtui",
            "registry",
            "serve",
            str(folder),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        first = proc.stderr.readline()
        port = int(re.search(r"on port (\d+)", first).group(1))
        assert 'registry = "http://127.0.0.1:' in proc.stderr.readline()
        offer = httpx.get(f"http://127.0.0.1:{port}/latest").json()
        assert offer["version"] == "v1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
