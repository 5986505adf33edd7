"""The agent client: typed answers, errors a technician can act on, and TLS pinning that never leaks
the token. Small loopback servers made here stand in where a real agent cannot misbehave on demand."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from fieldtui.client import AgentClient, normalize_fingerprint
from fieldtui.errors import (
    AgentClientError,
    AgentProtocolError,
    AgentTimeout,
    AgentUnauthorized,
    AgentUnreachable,
    TLSPinMismatch,
)
from fieldtui.protocol import HealthReport

HEALTH = HealthReport(status="ok", version="0.1.0", uptime_s=3.0).model_dump_json().encode()


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path, str]:
    """(cert.pem, key.pem, sha256 of the DER certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class Canned:
    """A loopback HTTP/1.1 server answering each path with a canned (status, content type, body);
    it records every byte it received, so a test can prove what never arrived."""

    def __init__(self, routes: dict[str, tuple[int, str, bytes]], ssl_context: ssl.SSLContext | None = None):
        self.routes = routes
        self.ssl_context = ssl_context
        self.received = bytearray()
        self.port = 0
        self.delay = 0.0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.received += head
                path = head.split(b" ", 2)[1].decode().split("?")[0]
                status, kind, body = self.routes.get(path, (404, "text/html", b"<h1>nope</h1>"))
                await asyncio.sleep(self.delay)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Canned]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"


def _server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# --- TLS pinning ----------------------------------------------------------------------------------


async def test_pinned_certificate_is_accepted_and_gets_the_token(tmp_path):
    cert, key, fingerprint = _self_signed(tmp_path, "device")
    async with Canned(
        {"/v1/health": (200, "application/json", HEALTH)}, _server_tls(cert, key)
    ).serving() as srv:
        pin = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()  # the colon form works too
        async with AgentClient(srv.url, token="tok-123", tls_fingerprint=pin) as client:
            health = await client.health()
            assert isinstance(health, HealthReport) and health.status == "ok"
            await client.health()  # the kept-alive connection is reused
    assert srv.received.count(b"Authorization: Bearer tok-123") == 2


async def test_other_certificate_fails_before_the_token_is_sent(tmp_path):
    cert, key, real = _self_signed(tmp_path, "impostor")
    _, _, pinned = _self_signed(tmp_path, "device")
    srv = Canned({"/v1/health": (200, "application/json", HEALTH)}, _server_tls(cert, key))
    async with srv.serving(), AgentClient(srv.url, token="tok-123", tls_fingerprint=pinned) as client:
        with pytest.raises(TLSPinMismatch) as err:
            await client.status()
    assert (err.value.expected, err.value.got) == (pinned, real)
    message = str(err.value)
    assert message.startswith(f"certificate fingerprint changed: expected {pinned[:8]}…, got {real[:8]}…")
    assert "fieldtui pair 127.0.0.1" in message
    assert b"tok-123" not in srv.received and srv.received == b""  # not a single HTTP byte arrived


async def test_https_without_a_pin_needs_a_trusted_certificate(tmp_path):
    cert, key, _ = _self_signed(tmp_path, "device")
    srv = Canned({"/v1/health": (200, "application/json", HEALTH)}, _server_tls(cert, key))
    async with srv.serving(), AgentClient(srv.url, token="tok-123") as client:
        with pytest.raises(AgentClientError, match="not trusted: pair with `fieldtui pair 127.0.0.1`"):
            await client.health()
    assert b"tok-123" not in srv.received


def test_fingerprint_forms():
    fp = "ab" * 32
    assert normalize_fingerprint("sha256:" + fp.upper()) == fp
    assert normalize_fingerprint(":".join(["AB"] * 32)) == fp
    with pytest.raises(ValueError, match="64 hex digits"):
        normalize_fingerprint("abcd")
    with pytest.raises(ValueError):
        AgentClient("https://127.0.0.1:1", tls_fingerprint="zz" * 32)


# --- errors ---------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_says_what_to_do():
    url = f"http://127.0.0.1:{_closed_port()}"
    async with AgentClient(url, token="t") as client:
        with pytest.raises(AgentUnreachable) as err:
            await client.health()
    assert str(err.value) == (
        f"connection refused at {url}/v1/health: is the agent running? try `fieldtui pair 127.0.0.1` over SSH"
    )
    assert err.value.status is None


async def test_timeout_is_its_own_error():
    srv = Canned({"/v1/health": (200, "application/json", HEALTH)})
    srv.delay = 2.0
    async with srv.serving(), AgentClient(srv.url, timeout=0.3) as client:
        with pytest.raises(AgentTimeout, match="timed out waiting for"):
            await client.health()


async def test_problem_json_becomes_an_error_with_status_and_detail():
    problem = {"type": "about:blank", "title": "Conflict", "status": 409, "detail": "a job runs: wait for it"}
    routes = {
        "/v1/pipeline/start": (409, "application/problem+json", json.dumps(problem).encode()),
        "/v1/status": (
            401,
            "application/problem+json",
            json.dumps({**problem, "status": 401, "detail": "bad token"}).encode(),
        ),
    }
    async with Canned(routes).serving() as srv, AgentClient(srv.url, token="t") as client:
        with pytest.raises(AgentClientError) as err:
            await client.pipeline_start()
        assert err.value.status == 409 and err.value.detail == "a job runs: wait for it"
        assert str(err.value) == "a job runs: wait for it (HTTP 409 from /v1/pipeline/start)"
        with pytest.raises(AgentUnauthorized) as err:
            await client.status()
        assert err.value.status == 401 and err.value.detail == "bad token"


async def test_not_an_agent():
    routes = {"/v1/health": (200, "application/json", b'{"hello": "world"}')}
    async with Canned(routes).serving() as srv, AgentClient(srv.url) as client:
        with pytest.raises(AgentProtocolError, match="compatible version"):
            await client.health()
        with pytest.raises(
            AgentClientError, match=r"HTTP 404 X from .*\(text/html\): is this a fieldtui agent\?"
        ):
            await client.device()


def test_repr_hides_the_token():
    assert "s3cret" not in repr(AgentClient("http://127.0.0.1:1", token="s3cret"))


# --- against a real agent -------------------------------------------------------------------------


async def test_every_call_returns_a_protocol_model(agent_proc):
    from fieldtui.protocol import DeviceInfo, Job, LogPage, PipelineStatus

    async with AgentClient(agent_proc.url, agent_proc.token) as client:
        assert isinstance(await client.health(), HealthReport)
        device = await client.device()
        assert isinstance(device, DeviceInfo) and any(b.key == "onnxruntime" for b in device.backends)
        status = await client.status()
        assert isinstance(status, PipelineStatus) and status.source is not None
        assert isinstance(await client.logs(limit=5), LogPage)
        assert "fieldtui_agent_" in await client.metrics_text()

        stopped = await client.pipeline_stop()
        assert isinstance(stopped, PipelineStatus) and stopped.state == "stopped"
        started = await client.pipeline_start()
        assert started.state in ("starting", "running")

        restart = await client.pipeline_restart()
        assert isinstance(restart, Job) and restart.kind
        done = await client.wait_job(restart.id, timeout=60)
        assert done.state == "succeeded", done.error
        assert (await client.job(restart.id)).id == restart.id
        assert restart.id in [j.id for j in await client.jobs()]

        change = await client.set_source("demo:?seed=3")
        assert (await client.wait_job(change.id, timeout=60)).state == "succeeded"
        assert (await client.status()).source.uri.startswith("demo:")

        with pytest.raises(AgentClientError) as err:
            await client.job("no-such-job")
        assert err.value.status == 404 and err.value.detail


async def test_wrong_token_is_refused_with_401_and_the_detail(agent_proc):
    async with AgentClient(agent_proc.url, "not-the-token") as client:
        assert (await client.health()).status  # public
        with pytest.raises(AgentUnauthorized) as err:
            await client.status()
    assert err.value.status == 401
    assert err.value.problem is not None and err.value.detail == err.value.problem.detail
    assert err.value.detail in str(err.value)
    assert "not-the-token" not in str(err.value)


async def test_pinning_against_a_real_tls_agent(start_agent, agent_home):
    from fieldtui.demo import read_token

    agent = start_agent(agent_home, "--tls")
    info = await read_token(agent_home)
    assert agent.url.startswith("https://") and info.tls_fingerprint
    async with AgentClient(agent.url, info.token, info.tls_fingerprint) as client:
        assert (await client.device()).tls_fingerprint == info.tls_fingerprint
    async with AgentClient(agent.url, info.token, "0" * 64) as client:
        with pytest.raises(TLSPinMismatch):
            await client.device()


async def test_scheme_mixups_say_which_scheme_to_use(start_agent, agent_home, tmp_path):
    plain = start_agent(agent_home)
    async with AgentClient(plain.url.replace("http://", "https://"), plain.token, "0" * 64) as client:
        with pytest.raises(
            AgentUnreachable, match="does not speak TLS: the agent runs without --tls, use http://"
        ):
            await client.status()
    tls = start_agent(tmp_path / "tls-home", "--tls")
    async with AgentClient(tls.url.replace("https://", "http://"), tls.token) as client:
        with pytest.raises(AgentUnreachable, match="if the agent runs with --tls, use https://"):
            await client.status()
