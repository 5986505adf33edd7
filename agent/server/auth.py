"""The API token and the brake on guessing it.

The token is made once (``secrets.token_urlsafe(32)``: 256 random bits, never starting with "-") and
kept in ``<home>/token`` with mode 0600. The console reads it over SSH at pairing time
(``fieldtui-agent token --json``), so SSH is the root of trust and nobody types it.

Guessing 256 bits is hopeless anyway; the throttle is there so a misconfigured client hammering the
device with a stale token does not flood the log, and so an online guesser gains nothing from
parallel connections: after ``free`` failures in ``window`` seconds from one address, every further
failure is answered after a growing delay, and past ``limit`` failures the address gets 429 with
``Retry-After`` without its token even being checked, until its failures age out of the window.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.core.home import AgentHome
from fieldtui.protocol import TokenInfo
from fieldtui.protocol.files import atomic_write

if TYPE_CHECKING:
    from agent.core.config import AgentConfig

TOKEN_BYTES = 32


def load_or_create_token(home: AgentHome) -> str:
    """The home's token, made now if there is none (or the file is empty)."""
    try:
        token = home.token_file.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        if os.stat(home.token_file).st_mode & 0o077:
            os.chmod(home.token_file, 0o600)  # someone loosened it: the token is a password
        return token
    token = new_token()
    atomic_write(home.token_file, token + "\n", mode=0o600)
    return token


def new_token() -> str:
    """256 random bits, URL-safe, never starting with "-": a command line would read such a token as
    a flag (``fieldtui add HOST --token -x...``), and one token in 64 would."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def token_info(config: AgentConfig) -> TokenInfo:
    """What pairing needs (``fieldtui-agent token --json``), making the home, token and certificate
    if this is the first time, so a console can pair before the agent ever served.

    A serving agent's runtime file wins over the config: it holds the URL and fingerprint in use.
    """
    from agent.server.device import public_url
    from agent.server.tls import ensure_tls

    home = config.agent_home.ensure()
    token = load_or_create_token(home)
    running = home.read_runtime()
    if running is not None:
        api_url, fingerprint = running["api_url"], running.get("tls_fingerprint")
    else:
        tls = ensure_tls(home) if config.tls else None
        fingerprint = tls.fingerprint if tls else None
        api_url = public_url(config.host, config.port, tls is not None)
    return TokenInfo(
        device_id=home.device_id(),
        name=config.name,
        token=token,
        api_url=api_url,
        tls_fingerprint=fingerprint,
    )


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison, so response timing says nothing about how close a guess was."""
    if not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


@dataclass(frozen=True)
class AuthPolicy:
    """How hard failures are braked; tests use a tight policy to see the brake without waiting."""

    window: float = 60.0  # seconds a failure is remembered
    free: int = 5  # failures in the window answered at once
    base_delay: float = 0.25  # the first slowed failure waits this long, doubling after
    max_delay: float = 4.0
    limit: int = 30  # past this many failures in the window: 429 until they age out
    max_clients: int = 4096  # addresses remembered at most (memory stays bounded under a flood)


class FailureThrottle:
    """Remembers recent auth failures per client address. Thread-safe; never sleeps itself."""

    def __init__(self, policy: AuthPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or AuthPolicy()
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.total_failures = 0
        self.total_refused = 0

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.policy.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again when it is over the limit, else None."""
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self.policy.limit:
                return None
            self.total_refused += 1
            # the oldest failure that keeps the count at the limit has to age out
            return max(0.0, times[len(times) - self.policy.limit] + self.policy.window - now)

    def failure(self, client: str) -> tuple[float, int]:
        """Record a failure; return how long to wait before answering it, and the failures in the window."""
        now = self._clock()
        with self._lock:
            self.total_failures += 1
            times = self._recent(client, now)
            if times is None:
                if len(self._failures) >= self.policy.max_clients:
                    self._evict(now)
                times = self._failures.setdefault(client, deque(maxlen=self.policy.limit + 1))
            times.append(now)
            count = len(times)
        over = count - self.policy.free
        if over <= 0:
            return 0.0, count
        return min(self.policy.max_delay, self.policy.base_delay * 2 ** (over - 1)), count

    def _evict(self, now: float) -> None:
        for client in list(self._failures):
            self._recent(client, now)
        while len(self._failures) >= self.policy.max_clients:
            # forget the address whose latest failure is oldest
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]

    def success(self, client: str) -> None:
        """A right token from ``client``: its earlier failures were a stale token, not a guesser."""
        with self._lock:
            self._failures.pop(client, None)
