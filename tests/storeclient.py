"""HTTP helpers for the model-store tests: raw requests (for what httpx would tidy up: dot segments,
missing Content-Length, a body cut off half-way), job waiting, and SSE ``model`` events in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from fieldtui.protocol import Job, ModelList
from tests import storemodels as sm


def raw_request(
    url: str, head: str, body: bytes = b"", *, close_after_send: bool = False
) -> tuple[int, dict]:
    """Send ``head`` (request line + headers, no final blank line) and ``body`` on a fresh socket; the
    status and the JSON body. ``close_after_send``: hang up without reading (a cut-off upload)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        if close_after_send:
            return 0, {}
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        status = int(head_bytes.split(b" ", 2)[1])
        length = 0
        for line in head_bytes.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, json.loads(rest) if rest else {}


def put_head(url: str, target: str, token: str, headers: dict[str, str]) -> str:
    host = urlsplit(url).netloc
    lines = [f"PUT {target} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines)


def upload(client: httpx.Client, path: Path, version: str, sha: str | None = None) -> httpx.Response:
    return client.put(
        f"/v1/models/{version}", content=path.read_bytes(), headers={"X-Model-Sha256": sha or sm.sha256(path)}
    )


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60.0) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = Job.model_validate(client.get(f"/v1/jobs/{job_id}").json())
        if job.state in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.state} at {job.stage!r}"
        time.sleep(0.05)


def activate(client: httpx.Client, version: str, timeout: float = 60.0) -> Job:
    response = client.post(f"/v1/models/{version}/activate")
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["id"], timeout)


def listing(client: httpx.Client) -> ModelList:
    return ModelList.model_validate(client.get("/v1/models").json())


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(every)


class ModelEvents:
    """SSE ``model`` events of an agent, read for real on a thread (``with ModelEvents(agent) as ev``)."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.events: list[dict] = []
        self._ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> ModelEvents:
        self._thread.start()
        assert self._ready.wait(10), "SSE stream did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(25)

    def _read(self) -> None:
        timeout = httpx.Timeout(10, read=1)
        last_id: str | None = None
        with self.agent.client(timeout=timeout) as client:
            while not self._stop:
                headers = {"Last-Event-ID": last_id} if last_id else {}
                try:
                    with client.stream("GET", "/v1/events", params={"events": "model"}, headers=headers) as r:
                        self._ready.set()
                        for line in r.iter_lines():
                            if line.startswith("id:"):
                                last_id = line[3:].strip()
                            elif line.startswith("data:"):
                                self.events.append(json.loads(line[5:]))
                except (httpx.ReadTimeout, httpx.RemoteProtocolError):
                    continue  # quiet for a second: check _stop, then resume after the last id

    def wait(self, predicate, timeout: float = 30.0) -> dict:
        return wait_for(lambda: next((e for e in self.events if predicate(e)), None), timeout)
