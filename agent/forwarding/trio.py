"""The Trio HTTP client: one request per call, every failure turned into a :class:`ForwardResult`.

Trio (https://trio.machinefi.com/api, a Bearer key) answers ``POST {base}/check-once`` with
``{triggered, explanation, latency_ms}`` and errors with ``{"error": {"code", "message", "remediation"}}``;
429 means back off (``Retry-After``). Frame mode posts a JPEG and the condition as multipart to a
configurable URL and expects the same answer.

Nothing here raises for a network or HTTP failure: a forward that failed is a result with an outcome and
a remediation (Trio's own when it gave one, ours otherwise). The key goes into the Authorization header
and nowhere else: not into a message, a log line or a result.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from fieldtui.protocol import ForwardMode, ForwardResult, TrioError

KEY_ENV = "FIELDTUI_AGENT_TRIO_API_KEY"
MAX_RETRY_AFTER_S = 3600.0  # a server asking for more is capped: the device must try again some day
DEFAULT_RETRY_AFTER_S = 30.0  # a 429 without a usable Retry-After

# Our remediation per outcome, used when Trio's body gave none.
REMEDIATION = {
    "unauthorized": (
        "check the Trio API key: set it with `fieldtui trio HOST --key-file FILE` (c on the console's "
        f'Trio screen), PUT /v1/forwarding {{"api_key": ...}} or ${KEY_ENV}'
    ),
    "forbidden": "the key is valid but not allowed to do this; check the plan of the Trio account",
    "STREAM_OFFLINE": "the camera stream is not reachable from Trio: check the camera is up and its URL "
    "is public, or use frame mode",
    "NOT_LIVESTREAM": "stream_url must be a live stream (RTSP/HLS/YouTube live), not a file or page; "
    "fix stream_url or use frame mode",
    "bad_request": "Trio refused the request: check stream_url and the condition in /v1/forwarding",
    "not_found": "no such endpoint: check base_url (and frame_url in frame mode) in /v1/forwarding",
    "rate_limited": "Trio asked to slow down: forwarding pauses as told; lower rules.rate_per_minute",
    "server_error": "Trio failed on its side; forwarding goes on, try again later",
    "timeout": "Trio did not answer in time: check the device's internet link, or raise timeout_s",
    "unreachable": "cannot connect to Trio: check base_url, DNS and the device's internet link",
    "connection_closed": "Trio closed the connection without an answer; try again, check any proxy",
    "bad_response": "Trio's answer was not the expected JSON; check base_url points at the Trio API",
    "no_key": "no Trio API key: set it with `fieldtui trio HOST --key-file FILE` (c on the console's Trio "
    f'screen), PUT /v1/forwarding {{"api_key": ...}} or ${KEY_ENV}',
}


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if value:
        text = value.strip()
        try:
            return min(MAX_RETRY_AFTER_S, max(0.0, float(text)))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_S
        return min(MAX_RETRY_AFTER_S, max(0.0, when - (time.time() if now is None else now)))
    return DEFAULT_RETRY_AFTER_S


def failure(code: str, message: str, *, remediation: str | None = None, **fields: Any) -> ForwardResult:
    """A failed result with ``code`` as the outcome (lower-cased Trio codes become their own outcome)."""
    outcome = fields.pop("outcome", code)
    return ForwardResult(
        ok=False,
        outcome=outcome,
        error=TrioError(
            code=code,
            message=message,
            remediation=remediation or REMEDIATION.get(code, REMEDIATION["bad_request"]),
        ),
        ts=time.time(),
        **fields,
    )


def _outcome_for(status: int) -> str:
    if status == 401:
        return "unauthorized"
    if status == 403:
        return "forbidden"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "bad_request"


def _trio_error(response: httpx.Response) -> dict[str, str]:
    """Trio's error object, or {} when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return {k: str(v) for k, v in err.items() if k in ("code", "message", "remediation") and v}
    return {}


class TrioClient:
    """A synchronous client for one base URL and key (the forwarding worker owns one; so does a test)."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.timeout = timeout
        # No proxies or .netrc from the environment: the key goes only where base_url says.
        self._http = httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)

    def __repr__(self) -> str:  # never the key
        return f"TrioClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def url_for(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def check_once(self, stream_url: str, condition: str, *, timeout: float | None = None) -> ForwardResult:
        """``POST {base}/check-once``: Trio looks at ``stream_url`` and judges ``condition``."""
        body = {"stream_url": stream_url, "condition": condition}
        request = self._http.build_request(
            "POST", self.url_for("check-once"), json=body, headers=self._headers()
        )
        return self._send(request, "check-once", timeout)

    def send_frame(
        self,
        frame_url: str,
        jpeg: bytes,
        condition: str,
        *,
        timeout: float | None = None,
        camera: str | None = None,
    ) -> ForwardResult:
        """Frame mode: ``multipart/form-data`` with ``image`` (frame.jpg), ``condition`` and, when known,
        ``camera`` (the name of the camera the frame came from)."""
        data = {"condition": condition} if camera is None else {"condition": condition, "camera": camera}
        request = self._http.build_request(
            "POST",
            self.url_for(frame_url),
            files={"image": ("frame.jpg", jpeg, "image/jpeg")},
            data=data,
            headers=self._headers(),
        )
        return self._send(request, "frame", timeout)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}

    def _send(self, request: httpx.Request, mode: ForwardMode, timeout: float | None) -> ForwardResult:
        result = self._exchange(request, mode, timeout)
        return _scrub(result, self._key) if self._key else result

    def _exchange(self, request: httpx.Request, mode: ForwardMode, timeout: float | None) -> ForwardResult:
        limit = self.timeout if timeout is None else timeout
        request.extensions["timeout"] = httpx.Timeout(limit).as_dict()
        url = str(request.url.copy_with(query=None))
        size = len(request.read())
        common: dict[str, Any] = {"mode": mode, "url": url, "payload_bytes": size}
        if not self._key:
            return failure("no_key", "no Trio API key is set; nothing was sent", **common)
        t0 = time.perf_counter()
        try:
            response = self._http.send(request)
        except httpx.TimeoutException as err:
            what = "connecting to" if isinstance(err, httpx.ConnectTimeout) else "waiting for"
            return failure(
                "timeout", f"timed out after {limit:g}s {what} {url}", latency_ms=_ms(t0), **common
            )
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return failure(
                "connection_closed",
                f"{url} closed the connection without an answer",
                latency_ms=_ms(t0),
                **common,
            )
        except httpx.TransportError as err:
            reason = "connection refused" if "refused" in str(err).lower() else type(err).__name__
            return failure("unreachable", f"cannot connect to {url}: {reason}", latency_ms=_ms(t0), **common)
        common.update(http_status=response.status_code, latency_ms=_ms(t0))
        if response.is_success:
            return _answer(response, common)
        outcome = _outcome_for(response.status_code)
        err = _trio_error(response)
        code = err.get("code") or outcome
        message = err.get("message") or f"HTTP {response.status_code} {response.reason_phrase}".strip()
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if outcome == "rate_limited" else None
        )
        return failure(
            code,
            f"Trio answered {response.status_code}: {message}",
            remediation=err.get("remediation") or REMEDIATION.get(code) or REMEDIATION.get(outcome),
            outcome=outcome,
            retry_after_s=retry_after,
            **common,
        )


def _scrub(result: ForwardResult, key: str) -> ForwardResult:
    """The result with the key cut out of every text Trio sent back (a server may echo what it got)."""
    text = result.model_dump_json()
    if key not in text:
        return result
    return ForwardResult.model_validate_json(text.replace(key, "***"))


def _answer(response: httpx.Response, common: dict[str, Any]) -> ForwardResult:
    try:
        body = response.json()
        triggered = body["triggered"]
        if not isinstance(triggered, bool):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return failure(
            "bad_response",
            f"answer of {common['url']} has no boolean 'triggered'",
            outcome="bad_response",
            **common,
        )
    trio_ms = body.get("latency_ms")
    return ForwardResult(
        ok=True,
        outcome="triggered" if triggered else "ok",
        triggered=triggered,
        explanation=str(body.get("explanation") or ""),
        trio_latency_ms=float(trio_ms) if isinstance(trio_ms, (int, float)) else None,
        ts=time.time(),
        **common,
    )


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 1)
