"""Pull mode: poll a model registry and apply what it offers through the same path as a push.

``GET {registry}/latest?device_id=ID`` answers ``{version, download_url, sha256[, size]}`` (a static
file serves as well: the query is only a hint for registries that choose per device). A version the
device does not have is downloaded into the store exactly as an upload is (staged, hashed, checked,
committed), then activated as a ``model.activate`` job: health check, swap, probation, automatic
rollback. A version whose activation already failed or was rolled back is not tried again until the
registry offers another one - a bad model on the registry must not make every device flap.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from agent.errors import AgentError
from agent.models import check_sha256, check_version, format_for
from fieldtui.protocol import ModelManifest, RegistryOffer

if TYPE_CHECKING:
    from agent.activation import ModelManager

log = logging.getLogger("fieldtui.agent.pull")

REFUSED = ("failed", "rolled_back", "refused")


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

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-pull", daemon=True)
        self._thread.start()
        log.info("pull mode: polling %s every %.0f s", self.url, self.interval)

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
        try:
            response = httpx.get(url, params={"device_id": self.device_id}, timeout=10.0, trust_env=False)
        except httpx.HTTPError as err:
            raise AgentError(f"registry {self.url} unreachable ({type(err).__name__}: {err})") from None
        if response.status_code != 200:
            raise AgentError(f"registry {url} answered HTTP {response.status_code}; nothing to pull")
        try:
            offer = RegistryOffer.model_validate_json(response.content)
        except ValueError:
            raise AgentError(
                f"registry {url} did not answer {{version, download_url, sha256}} JSON; check its URL"
            ) from None
        check_version(offer.version)
        offer.sha256 = check_sha256(offer.sha256)
        return offer

    def poll_once(self) -> str:
        """Ask the registry once; download and activate when it offers something new. What happened."""
        offer = self.fetch_offer()
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
            self.download(offer)
        row = manager.history.serving_row(version)
        if row is not None and row.outcome in REFUSED:
            if (version, offer.sha256) not in self._skipped:
                self._skipped.add((version, offer.sha256))
                log.warning("pull mode: %s was %s before (%s); not retried", version, row.outcome, row.reason)
            return f"{version} was {row.outcome} before; not retried"
        if manager.activation_pending(version):
            return f"{version} is being activated"
        job = manager.submit_activate(version, reason=f"update from registry {self.url}")
        log.info("pull mode: activating %s from %s (job %s)", version, self.url, job.id)
        return f"activating {version}"

    def download(self, offer: RegistryOffer) -> ModelManifest:
        """Stream the offered file into the store (staged, hashed, checked, committed)."""
        import httpx

        url = urljoin(self.url + "/", offer.download_url)
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        fmt = format_for(name) if name.lower().endswith((".onnx", ".engine", ".hef", ".tflite")) else "onnx"
        try:
            with httpx.stream("GET", url, timeout=httpx.Timeout(30.0), trust_env=False) as response:
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
        except httpx.HTTPError as err:
            raise AgentError(
                f"download of {offer.version} from {url} failed ({type(err).__name__}: {err})"
            ) from None
        manifest, _ = upload.finish()
        self.manager.stored(manifest)
        log.info("pull mode: stored %s from %s", offer.version, url)
        return manifest
