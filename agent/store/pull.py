"""Pull mode: poll a model registry and apply what it offers through the same path as a push.

``GET {registry}/latest?device_id=ID`` answers ``{version, download_url, sha256[, size]}`` (a static
file serves as well: the query is only a hint for registries that choose per device). A version the
device does not have is downloaded into the store exactly as an upload is (staged, hashed, checked,
committed), then activated as a ``model.activate`` job: health check, swap, probation, automatic
rollback. A version whose activation already failed or was rolled back is not tried again until the
registry offers another one - a bad model on the registry must not make every device flap.

The registry is not trusted further than that: the offer is read streamed and refused beyond
:data:`OFFER_MAX_BYTES`; each poll has an overall deadline (a server dripping a byte every few seconds
would otherwise reset the read timeout forever), and so does each download; a download that fails its
sha256 (or fails otherwise) is not fetched again for that offer until its back-off has passed
(1 min, doubling to 6 h), which the model list's ``pull`` line says.
Before any of that, :meth:`RegistryPoller.screen` checks the offer (agent/store/offer_check.py): its
signature when ``[models] registry_key`` is set, and whether a staged rollout reaches this device.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from agent.core.errors import AgentError
from agent.store.models import check_sha256, check_version, format_for
from agent.store.offer_check import OfferCheck
from fieldtui.protocol import BAD_VERDICTS, ModelManifest, RegistryOffer

if TYPE_CHECKING:
    from agent.store.activation import ModelManager

log = logging.getLogger("fieldtui.agent.pull")

OFFER_MAX_BYTES = 8192  # an offer is a few hundred bytes of JSON
POLL_DEADLINE_S = 30.0  # the whole offer request, however slowly the bytes come
DOWNLOAD_MIN_RATE = 50_000  # bytes/s a download must average: its deadline is size / this (+ 60 s)
BACKOFF_S = (60.0, 6 * 3600.0)  # first and longest wait before a failed download is tried again


@contextlib.contextmanager
def deadline(client: Any, seconds: float) -> Iterator[threading.Event]:
    """Close ``client`` (which ends a read it is blocked in) if the block takes more than ``seconds``;
    the event is set when that happened."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        client.close()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


class RegistryPoller:
    """A thread that calls :meth:`poll_once` every ``registry_poll_s`` seconds (first right away)."""

    def __init__(self, manager: ModelManager, url: str, device_id: str) -> None:
        self.manager = manager
        self.url = url.rstrip("/")
        self.device_id = device_id
        self.interval = manager.settings.registry_poll_s
        self.last: str | None = None  # what the last poll did, for the log and tests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._skipped: set[tuple[str, str]] = set()
        # offer (version, sha256, download_url) -> (failures, not before (monotonic), why)
        self._failed: dict[tuple[str, str, str], tuple[int, float, str]] = {}
        self.check = OfferCheck(device_id, manager.settings.registry_key)
        self._screened: set[tuple[str | None, ...]] = set()  # offers already logged

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-pull", daemon=True)
        self._thread.start()
        log.info("pull mode: polling %s every %.0f s", self.url, self.interval)
        if self.check.signed:
            log.info("pull mode: only offers signed by registry key %s are taken", self.check.fingerprint)
        else:
            log.warning(
                "pull mode: offers are taken unsigned; set [models] registry_key to require signatures"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self.poll_once()
                self._last_error = None
            except AgentError as err:
                if str(err) != self._last_error:  # once per distinct problem, not every poll
                    log.warning("pull mode: %s", err)
                self._last_error = self.last = str(err)
            except Exception:  # noqa: BLE001 - a bug here must not stop pull mode for good
                log.exception("pull mode: poll failed")
            self._stop.wait(self.interval)

    def fetch_offer(self) -> RegistryOffer:
        import httpx

        url = f"{self.url}/latest"
        body = bytearray()
        with httpx.Client(timeout=10.0, trust_env=False) as client, deadline(client, POLL_DEADLINE_S) as late:
            try:
                with client.stream("GET", url, params={"device_id": self.device_id}) as response:
                    if response.status_code != 200:
                        raise AgentError(
                            f"registry {url} answered HTTP {response.status_code}; nothing to pull"
                        )
                    for chunk in response.iter_bytes(1024):
                        body += chunk
                        if len(body) > OFFER_MAX_BYTES:
                            raise AgentError(
                                f"registry {url} sent an offer over {OFFER_MAX_BYTES} bytes; an offer is "
                                "{version, download_url, sha256} JSON: check the registry URL"
                            )
            except (httpx.HTTPError, RuntimeError) as err:
                if late.is_set():
                    raise AgentError(
                        f"registry {url} did not answer within {POLL_DEADLINE_S:.0f} s; trying again next poll"
                    ) from None
                raise AgentError(f"registry {self.url} unreachable ({type(err).__name__}: {err})") from None
        try:
            offer = RegistryOffer.model_validate_json(bytes(body))
        except ValueError:
            raise AgentError(
                f"registry {url} did not answer {{version, download_url, sha256}} JSON; check its URL"
            ) from None
        check_version(offer.version)
        offer.sha256 = check_sha256(offer.sha256)
        return offer

    def backoff(self, offer: RegistryOffer) -> str | None:
        """Why ``offer`` is not downloaded now (a failed download waiting out its back-off), or None."""
        failed = self._failed.get((offer.version, offer.sha256, offer.download_url))
        if failed is None:
            return None
        count, until, why = failed
        left = until - time.monotonic()
        if left <= 0:
            return None
        return (
            f"{offer.version} not downloaded again for {left:.0f} s (download failed {count} time(s): {why})"
        )

    def _download_failed(self, offer: RegistryOffer, why: str) -> None:
        key = (offer.version, offer.sha256, offer.download_url)
        count = self._failed.get(key, (0, 0.0, ""))[0] + 1
        wait = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** (count - 1))
        self._failed[key] = (count, time.monotonic() + wait, why)
        log.warning("pull mode: %s; trying this offer again in %.0f s", why, wait)

    def poll_once(self) -> str:
        """Ask the registry once; download and activate when it offers something new. What happened."""
        offer = self.fetch_offer()
        screened = self.screen(offer)
        if screened is not None:
            return screened
        manager, version = self.manager, offer.version
        if version == manager.serving:
            return f"{version} already serves"
        store = manager.store
        if store.has(version):
            have = store.manifest(version).sha256
            if have != offer.sha256:
                raise AgentError(
                    f"registry offers {version} with sha256 {offer.sha256[:12]}… but this device has "
                    f"{version} as {have[:12]}…; publish it under a new version name"
                )
        else:
            waiting = self.backoff(offer)
            if waiting is not None:
                return waiting
            try:
                self.download(offer)
            except AgentError as err:
                self._download_failed(offer, str(err))
                raise
        verdict, why, _ = manager.history.verdicts().get(version, ("never_activated", None, 0))
        if verdict in BAD_VERDICTS:  # the store's own verdict: the same one a technician's --force overrides
            shown = verdict.replace("_", " ")
            if (version, offer.sha256) not in self._skipped:
                self._skipped.add((version, offer.sha256))
                log.warning("pull mode: %s %s before (%s); not retried", version, shown, why)
            return f"{version} {shown} before; not retried"
        if manager.activation_pending(version):
            return f"{version} is being activated"
        job = manager.submit_activate(version, reason=f"update from registry {self.url}")
        log.info("pull mode: activating %s from %s (job %s)", version, self.url, job.id)
        return f"activating {version}"

    def screen(self, offer: RegistryOffer) -> str | None:
        """The offer check, in one place: None to go on; else what the poll did instead. A refused
        signature goes to the model history and the log once per distinct offer, not every poll."""
        verdict = self.check(offer)
        if verdict.take:
            return None
        assert verdict.why is not None
        rollout = offer.rollout.model_dump_json() if offer.rollout else None
        seen = (offer.version, offer.sha256, offer.signature, rollout)  # what one log line is for
        if verdict.refused:
            if seen not in self._screened:
                self._screened.add(seen)
                log.warning("pull mode: refused an offer from %s: %s", self.url, verdict.why)
                self.manager.history.add(
                    "pull",
                    offer.version,
                    "refused",
                    reason=verdict.why,
                    details={"registry": self.url, "sha256": offer.sha256},
                )
            return f"refused: {verdict.why}"
        if seen not in self._screened:
            self._screened.add(seen)
            log.info("pull mode: %s", verdict.why)
        return verdict.why

    def download(self, offer: RegistryOffer) -> ModelManifest:
        """Stream the offered file into the store (staged, hashed, checked, committed)."""
        import httpx

        url = urljoin(self.url + "/", offer.download_url)
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        fmt = format_for(name) if name.lower().endswith((".onnx", ".engine", ".hef", ".tflite")) else "onnx"
        limit = 60.0 + (offer.size or 0) / DOWNLOAD_MIN_RATE
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30.0), trust_env=False) as client,
                deadline(client, limit) as late,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise AgentError(
                        f"download of {offer.version} from {url} failed: HTTP {response.status_code}"
                    )
                length = response.headers.get("content-length")
                size = int(length) if length and length.isdecimal() else offer.size
                upload = self.manager.begin_upload(
                    offer.version, offer.sha256, size=size, fmt=fmt, source=f"registry {self.url}"
                )
                if isinstance(upload, ModelManifest):
                    return upload
                try:
                    for chunk in response.iter_bytes(1 << 20):
                        if self._stop.is_set():
                            raise AgentError("the agent is stopping")
                        upload.write(chunk)
                except BaseException as err:
                    upload.abort(f"download interrupted: {err}")
                    raise
        except (httpx.HTTPError, RuntimeError) as err:
            if late.is_set():
                raise AgentError(
                    f"download of {offer.version} from {url} took over {limit:.0f} s; nothing was stored"
                ) from None
            raise AgentError(
                f"download of {offer.version} from {url} failed ({type(err).__name__}: {err})"
            ) from None
        manifest, _ = upload.finish()
        self.manager.stored(manifest)
        log.info("pull mode: stored %s from %s", offer.version, url)
        return manifest
