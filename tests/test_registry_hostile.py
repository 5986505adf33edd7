"""Pull mode against a hostile registry of our own on loopback: an offer of 100 MB, a server dripping a
byte at a time, a file whose sha256 never matches. The agent reads at most a few KB of offer, gives
each poll a deadline, and backs off an offer whose download failed instead of fetching it every poll."""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.core.errors import AgentError
from agent.store import pull as registry_pull
from agent.store.pull import OFFER_MAX_BYTES, RegistryPoller
from tests.storeclient import listing

FILE = b"\x08" * (1 << 20)  # 1 MB that is not what the offer's sha256 says


class Hostile:
    """``/latest`` and ``/file`` misbehaving as ``mode`` says; counts requests per path."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.hits: dict[str, int] = {}
        self.stop = threading.Event()
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                hostile.hits[path] = hostile.hits.get(path, 0) + 1
                with contextlib.suppress(OSError):
                    if path == "/latest":
                        hostile.latest(self)
                    elif path == "/file":
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(FILE)))
                        self.end_headers()
                        self.wfile.write(FILE)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def latest(self, h: BaseHTTPRequestHandler) -> None:
        if self.mode == "huge":  # 100 MB of "offer", as fast as the agent takes it
            h.send_response(200)
            h.send_header("Content-Length", str(100 << 20))
            h.end_headers()
            chunk = b'{"version": "v1", "pad": "' + b"x" * (1 << 16)
            for _ in range(100 << 4):
                h.wfile.write(chunk)
        elif self.mode == "drip":  # a byte every 0.3 s, forever
            h.send_response(200)
            h.end_headers()
            while not self.stop.wait(0.3):
                h.wfile.write(b" ")
                h.wfile.flush()
        else:  # "mismatch": a plain offer whose sha256 is not the file's
            body = json.dumps(
                {"version": "v9", "download_url": "/file", "sha256": hashlib.sha256(b"other").hexdigest()}
            ).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def manager(agent_inproc):
    return agent_inproc.service.models


def test_an_offer_of_100_mb_is_refused_after_a_few_kb(manager) -> None:
    with Hostile("huge") as registry:
        poller = RegistryPoller(manager, registry.url, "dev1")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(AgentError, match=f"over {OFFER_MAX_BYTES} bytes"):
            poller.poll_once()
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 20, f"reading the offer grew the peak RSS by {grown_mb:.0f} MB"


def test_a_dripping_registry_meets_the_poll_deadline(manager, monkeypatch) -> None:
    monkeypatch.setattr(registry_pull, "POLL_DEADLINE_S", 2.0)
    with Hostile("drip") as registry:
        poller = RegistryPoller(manager, registry.url, "dev1")
        t0 = time.monotonic()
        with pytest.raises(AgentError, match="did not answer within 2 s"):
            poller.poll_once()
        took = time.monotonic() - t0
    assert took < 6.0, f"the poll took {took:.1f} s for a 2 s deadline"


def test_a_sha256_mismatch_backs_off_and_says_so(agent_inproc, manager) -> None:
    with Hostile("mismatch") as registry:
        poller = RegistryPoller(manager, registry.url, "dev1")
        with pytest.raises(AgentError, match="sha256 mismatch"):
            poller.poll_once()
        for _ in range(5):  # every later poll within the back-off: no download
            said = poller.poll_once()
        assert registry.hits["/file"] == 1 and registry.hits["/latest"] == 6
        assert said.startswith("v9 not downloaded again for") and "sha256 mismatch" in said
        manager.poller, before = poller, manager.poller
        poller.last = said
        try:
            with agent_inproc.client() as c:
                assert "not downloaded again" in listing(c).pull.last
        finally:
            manager.poller = before
        # the back-off passed: one more try, then a longer wait
        key = next(iter(poller._failed))
        count, _, why = poller._failed[key]
        poller._failed[key] = (count, time.monotonic() - 1, why)
        with pytest.raises(AgentError, match="sha256 mismatch"):
            poller.poll_once()
        assert registry.hits["/file"] == 2 and poller._failed[key][0] == 2
        assert poller._failed[key][1] - time.monotonic() > 100  # 2 min after the second failure
    assert "v9" not in {v.version for v in manager.store.versions()}
