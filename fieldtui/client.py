"""The console's async link to one agent: typed calls over httpx, errors a technician can act on.

TLS pinning: the agent's certificate is self-signed, so chain validation is off and the certificate's
SHA-256 fingerprint (taken over SSH at pairing) is checked instead, inside the TLS handshake of every new
connection (a custom ``SSLObject`` on the context, which anyio/httpcore use for the handshake). A
mismatch fails the handshake, so no request, and no token, ever reaches an unpinned peer. ``https``
without a pin falls back to ordinary CA validation; redirects are never followed and proxies from the
environment are ignored, so the token only goes where the technician pointed it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from fieldtui.errors import (
    CONNECTION_CLOSED,
    AgentClientError,
    AgentProtocolError,
    AgentTimeout,
    AgentUnauthorized,
    AgentUnreachable,
    TLSPinMismatch,
)
from fieldtui.protocol import (
    BenchmarkList,
    BenchmarkRequest,
    BenchmarkRun,
    CameraChange,
    CameraList,
    CameraStatus,
    DeviceInfo,
    DeviceRecord,
    EngineList,
    EngineRebuildRequest,
    ForwardingState,
    ForwardingUpdate,
    ForwardResult,
    ForwardTestRequest,
    HealthReport,
    Job,
    JobList,
    LogPage,
    ModelList,
    ModelVersion,
    PipelineStatus,
    Problem,
    SeriesPage,
    SourceChange,
)

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("fieldtui.client")

DEFAULT_TIMEOUT = 10.0
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def normalize_fingerprint(text: str) -> str:
    """``AB:12:...``, ``sha256:ab12...`` or ``ab12...`` -> 64 lowercase hex digits."""
    fp = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if not _FINGERPRINT.match(fp):
        raise ValueError(
            "a TLS fingerprint is the SHA-256 of the certificate (DER) in 64 hex digits, "
            "as `fieldtui-agent token --json` prints it"
        )
    return fp


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _short(fp: str) -> str:
    return f"{fp[:8]}…" if fp else "no certificate"


class PinMismatchSSLError(ssl.SSLError):
    """Raised inside the handshake; the client turns it into :class:`TLSPinMismatch`."""

    def __init__(self, expected: str, got: str) -> None:
        # (errno, strerror): anyio reads ``strerror`` of every SSLError it sees.
        super().__init__(1, f"certificate fingerprint {got or 'missing'} is not the pinned {expected}")
        self.expected = expected
        self.got = got


def pinned_ssl_context(fingerprint: str) -> ssl.SSLContext:
    """A client context that trusts exactly one certificate, checked during the handshake."""
    expected = normalize_fingerprint(fingerprint)

    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # raises SSLWantReadError until the handshake is complete
            der = self.getpeercert(binary_form=True) or b""
            got = fingerprint_of(der) if der else ""
            if not hmac.compare_digest(got, expected):
                raise PinMismatchSSLError(expected, got)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # the pin replaces name and chain checks: devices move between IPs
    ctx.verify_mode = ssl.CERT_NONE
    ctx.sslobject_class = PinnedSSLObject
    return ctx


def _find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def transport_error(exc: httpx.TransportError, url: str) -> AgentClientError:
    """One actionable line for a failure below HTTP."""
    host = urlsplit(url).hostname or url
    pin = _find_cause(exc, PinMismatchSSLError)
    if isinstance(pin, PinMismatchSSLError):
        return TLSPinMismatch(
            f"certificate fingerprint changed: expected {_short(pin.expected)}, got {_short(pin.got)}; "
            f"re-pair with `fieldtui pair {host}` if the device was reinstalled",
            expected=pin.expected,
            got=pin.got,
            url=url,
        )
    if isinstance(_find_cause(exc, ssl.SSLCertVerificationError), ssl.SSLCertVerificationError):
        return AgentClientError(
            f"TLS certificate of {url} is not trusted: pair with `fieldtui pair {host}` to pin its fingerprint",
            url=url,
        )
    ssl_err = _find_cause(exc, ssl.SSLError)
    if ssl_err is not None and "WRONG_VERSION_NUMBER" in str(ssl_err):
        return AgentUnreachable(
            f"{url} does not speak TLS: the agent runs without --tls, use http:// (or pair again)", url=url
        )
    if isinstance(exc, httpx.TimeoutException):
        what = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
        return AgentTimeout(
            f"timed out {what} {url}: is the device on this network and the agent running?",
            url=url,
            summary=f"timed out {what} the agent",
        )
    refused = _find_cause(exc, ConnectionRefusedError)
    if refused is not None or "refused" in str(exc).lower():
        return AgentUnreachable(
            f"connection refused at {url}: is the agent running? try `fieldtui pair {host}` over SSH",
            url=url,
            summary="the agent refused the connection",
        )
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or type(exc).__name__
        return AgentUnreachable(
            f"cannot reach {url}: {reason}; check the address and the network",
            url=url,
            summary=f"cannot reach the device ({reason})",
        )
    # The connection was up and went: the agent stopped or restarted, or the network dropped. httpx's own
    # words ("incomplete chunked read", "peer closed connection") mean nothing to a technician.
    log.debug("connection to %s dropped: %s: %s", url, type(exc).__name__, exc)
    hint = "; if the agent runs with --tls, use https://" if url.startswith("http://") else ""
    return AgentUnreachable(f"{CONNECTION_CLOSED} at {url}{hint}", url=url, summary=CONNECTION_CLOSED)


def http_error(response: httpx.Response) -> AgentClientError:
    """The agent's problem+json turned into an error carrying its detail and status."""
    url = str(response.request.url)
    status = response.status_code
    problem: Problem | None = None
    with suppress(ValidationError):
        problem = Problem.model_validate_json(response.content)
    if problem is not None:
        message = f"{problem.detail} (HTTP {status} from {response.request.url.path})"
    else:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        message = f"HTTP {status} {response.reason_phrase} from {url} ({kind}): is this a fieldtui agent?"
    cls = AgentUnauthorized if status in (401, 403) else AgentClientError
    return cls(message, status=status, url=url, problem=problem)


class AgentClient:
    """``async with AgentClient(url, token, fingerprint) as agent: await agent.status()``.

    Every method returns a :mod:`fieldtui.protocol` model or raises an :class:`AgentClientError`.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        tls_fingerprint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tls_fingerprint = normalize_fingerprint(tls_fingerprint) if tls_fingerprint else None
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "fieldtui-console"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = True
        if self.base_url.startswith("https://") and self.tls_fingerprint:
            verify = pinned_ssl_context(self.tls_fingerprint)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            trust_env=False,
        )

    @classmethod
    def for_device(
        cls, device: DeviceRecord, token: str | None, timeout: float = DEFAULT_TIMEOUT
    ) -> AgentClient:
        return cls(device.api_url, token, device.tls_fingerprint if device.tls else None, timeout)

    def __repr__(self) -> str:  # never the token
        return f"AgentClient({self.base_url!r}, pinned={bool(self.tls_fingerprint)})"

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing --------------------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; any failure comes back as an :class:`AgentClientError`."""
        url = self.base_url + path
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(exc, url) from None
        if response.status_code >= 400:
            raise http_error(response)
        return response

    async def _get(self, path: str, model: type[M], **kwargs: Any) -> M:
        return _parse(await self.request("GET", path, **kwargs), model)

    async def _post(self, path: str, model: type[M], **kwargs: Any) -> M:
        return _parse(await self.request("POST", path, **kwargs), model)

    @asynccontextmanager
    async def stream(self, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.Response]:
        """An open streaming GET (for SSE); errors mapped like :meth:`request`."""
        url = self.base_url + path
        # Reads may pause between keep-alive pings (15 s); allow three missed ones before giving up.
        timeout = httpx.Timeout(45.0, connect=min(self.timeout, 5.0))
        try:
            async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise http_error(response)
                yield response
        except httpx.TransportError as exc:
            raise transport_error(exc, url) from None

    # --- the API ---------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        return await self._get("/v1/health", HealthReport)

    async def device(self) -> DeviceInfo:
        return await self._get("/v1/device", DeviceInfo)

    async def status(self) -> PipelineStatus:
        return await self._get("/v1/status", PipelineStatus)

    async def jobs(self, limit: int | None = None) -> list[Job]:
        """Recent jobs, newest first (the agent's default count, or ``limit``, at most 500)."""
        params = {"limit": limit} if limit is not None else {}
        return (await self._get("/v1/jobs", JobList, params=params)).jobs

    async def job(self, job_id: str) -> Job:
        return await self._get(f"/v1/jobs/{quote(job_id, safe='')}", Job)

    async def cancel_job(self, job_id: str) -> Job:
        return await self._post(f"/v1/jobs/{quote(job_id, safe='')}/cancel", Job)

    async def wait_job(self, job_id: str, timeout: float = 60.0, interval: float = 0.2) -> Job:
        """Poll a job until it ends (succeeded, failed or cancelled); AgentTimeout if it does not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job = await self.job(job_id)
            if job.state in ("succeeded", "failed", "cancelled"):
                return job
            if loop.time() >= deadline:
                raise AgentTimeout(
                    f"job {job_id} ({job.kind}) is still {job.state} after {timeout:g} s, at {job.stage or 'no stage'}",
                    url=self.base_url,
                )
            await asyncio.sleep(interval)

    async def logs(
        self, limit: int | None = None, level: str | None = None, since: float | None = None
    ) -> LogPage:
        """Recent agent log lines (already redacted by the agent), optionally from ``since`` (epoch s)."""
        params = {k: v for k, v in (("limit", limit), ("level", level), ("since", since)) if v is not None}
        return await self._get("/v1/logs", LogPage, params=params)

    async def series(self, since: float | None = None) -> SeriesPage:
        """Latency, FPS and confidence a minute at a time (the agent keeps 24 hours), from ``since``."""
        return await self._get("/v1/series", SeriesPage, params={"since": since} if since is not None else {})

    async def start_benchmark(self, request: BenchmarkRequest) -> Job:
        """Submit a benchmark job (follow it with :meth:`job`); 409 while another one runs."""
        return await self._post("/v1/benchmarks", Job, json=request.model_dump(mode="json"))

    async def benchmarks(self, limit: int = 20) -> BenchmarkList:
        return await self._get("/v1/benchmarks", BenchmarkList, params={"limit": limit})

    async def benchmark(self, run_id: str) -> BenchmarkRun:
        return await self._get(f"/v1/benchmarks/{quote(run_id, safe='')}", BenchmarkRun)

    async def cameras(self) -> CameraList:
        """Every camera: state, source (redacted), last sample and health."""
        return await self._get("/v1/cameras", CameraList)

    async def camera(self, name: str) -> CameraStatus:
        """One camera (404 when the device has none of that name)."""
        return await self._get(f"/v1/cameras/{quote(name, safe='')}", CameraStatus)

    async def put_camera(self, name: str, change: CameraChange) -> CameraStatus:
        """Add the camera or change the keys set in ``change`` (the source is opened on the device
        first: 422 with the reason when it cannot be, and the camera runs on as it was)."""
        body = change.model_dump(exclude_unset=True)
        return _parse(
            await self.request("PUT", f"/v1/cameras/{quote(name, safe='')}", json=body), CameraStatus
        )

    async def remove_camera(self, name: str) -> None:
        """Remove the camera; the others run on (409 for the last one)."""
        await self.request("DELETE", f"/v1/cameras/{quote(name, safe='')}")

    async def camera_snapshot_jpeg(self, name: str, width: int | None = None) -> bytes:
        """That camera's latest frame with its detections drawn, as JPEG."""
        params = {"width": width} if width else None
        path = f"/v1/cameras/{quote(name, safe='')}/snapshot.jpg"
        return (await self.request("GET", path, params=params, headers={"Accept": "image/jpeg"})).content

    async def engines(self) -> EngineList:
        """Engines with their fingerprints and stale flags, and what the device can build."""
        return await self._get("/v1/engines", EngineList)

    async def rebuild_engine(self, request: EngineRebuildRequest) -> Job:
        """Submit an engine rebuild (its result is an EngineRebuildResult); 422 when the device cannot
        build it, 409 while another rebuild runs."""
        return await self._post("/v1/engines/rebuild", Job, json=request.model_dump(mode="json"))

    async def pipeline_start(self) -> PipelineStatus:
        return await self._post("/v1/pipeline/start", PipelineStatus)

    async def pipeline_stop(self) -> PipelineStatus:
        return await self._post("/v1/pipeline/stop", PipelineStatus)

    async def pipeline_restart(self) -> Job:
        """A restart is a job: follow it with :meth:`job` or the ``job`` events."""
        return await self._post("/v1/pipeline/restart", Job)

    async def set_source(self, uri: str) -> Job:
        """Switch the camera (validated first on the device; the old source keeps running if bad)."""
        body = SourceChange(uri=uri).model_dump()
        return _parse(await self.request("PUT", "/v1/pipeline/source", json=body), Job)

    async def snapshot_jpeg(self, width: int | None = None) -> bytes:
        """The latest frame with its detections drawn, as JPEG (``width`` scales it down on the device)."""
        params = {"width": width} if width else None
        headers = {"Accept": "image/jpeg"}
        return (await self.request("GET", "/v1/snapshot.jpg", params=params, headers=headers)).content

    async def metrics_text(self) -> str:
        return (await self.request("GET", "/metrics", headers={"Accept": "text/plain"})).text

    # --- Trio forwarding -------------------------------------------------------------------------

    async def forwarding(self) -> ForwardingState:
        """Forwarding settings, the API key masked, queue depth and counters."""
        return await self._get("/v1/forwarding", ForwardingState)

    async def forwarding_update(self, update: ForwardingUpdate) -> ForwardingState:
        """Change the fields set in ``update`` (its ``api_key`` is stored on the device, never returned)."""
        body = update.model_dump(exclude_unset=True)
        return _parse(await self.request("PUT", "/v1/forwarding", json=body), ForwardingState)

    async def trio_test(self, condition: str | None = None, timeout_s: float | None = None) -> ForwardResult:
        """One forward now. The agent answers within the forward's timeout (at most 30 s); we wait longer."""
        body = ForwardTestRequest(condition=condition, timeout_s=timeout_s).model_dump(exclude_none=True)
        wait = (timeout_s or 30.0) + 10.0
        return await self._post("/v1/forwarding/test", ForwardResult, json=body, timeout=wait)

    # --- the model store (the streamed upload itself: fieldtui/push.py) ----------------------------

    async def models(self) -> ModelList:
        """Versions, which is current and serving, and the store's history with reasons."""
        return await self._get("/v1/models", ModelList)

    async def upload_model(
        self,
        version: str,
        body: AsyncIterable[bytes],
        *,
        size: int,
        sha256: str,
        fmt: str = "onnx",
        timeout: float = 300.0,
        force: bool = False,
    ) -> ModelVersion:
        """PUT a model, the body streamed from ``body`` (exactly ``size`` bytes). The agent answers
        once it has verified and validated the model, hence the long read timeout."""
        headers = {
            "Content-Length": str(size),  # set explicitly: httpx would send an iterator chunked
            "Content-Type": "application/octet-stream",
            "X-Model-Sha256": sha256,
            "X-Model-Format": fmt,
        }
        response = await self.request(
            "PUT",
            f"/v1/models/{quote(version, safe='')}" + ("?force=true" if force else ""),
            content=body,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(self.timeout, 5.0)),
        )
        return _parse(response, ModelVersion)

    async def activate_model(self, version: str, *, force: bool = False) -> Job:
        """Activation is a job (health check, swap, then probation): follow it with :meth:`wait_job`.
        ``force``: also a version that failed or was rolled back before (else 409 naming why)."""
        query = "?force=true" if force else ""
        return await self._post(f"/v1/models/{quote(version, safe='')}/activate{query}", Job)

    async def rollback_model(self) -> Job:
        return await self._post("/v1/models/rollback", Job)

    async def remove_model(self, version: str) -> ModelList:
        return _parse(await self.request("DELETE", f"/v1/models/{quote(version, safe='')}"), ModelList)

    def events(self, **options: Any):  # -> fieldtui.sse.EventStream
        """Live events (``sample``, ``job``, ``model``, ``health``, ``log``) that survive drops."""
        from fieldtui.sse import EventStream

        return EventStream(self, **options)


def _parse(response: httpx.Response, model: type[M]) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as err:
        raise _unexpected(response, err) from None


def _unexpected(response: httpx.Response, err: ValidationError) -> AgentProtocolError:
    first = str(err).splitlines()
    what = first[1] if len(first) > 1 else first[0]
    return AgentProtocolError(
        f"unexpected answer from {response.request.url}: {what}; is the agent a compatible version?",
        status=response.status_code,
        url=str(response.request.url),
    )
