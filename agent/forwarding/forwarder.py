"""Trio forwarding: rules pick frames, a bounded queue and one worker thread send them.

The pipeline calls :meth:`Forwarder.on_camera_frame` on its postprocess thread for every frame of every
camera (:meth:`Forwarder.on_frame` for a one-camera pipeline), so that call
only evaluates the rules and does a non-blocking put: a frame is copied only once every rule let it
through, JPEG encoding and redaction happen on the worker, and a full queue drops the frame (counted)
rather than wait. A slow, failing or absent cloud therefore costs the pipeline nothing but the rule
check (a few microseconds: no lock, no Prometheus call; drops are plain counts read at scrape time).
The checks run cheapest first: the rule's cameras, confidence and classes, the per-camera per-class
cooldown, Trio's back-off after
a 429, queue space, then the global token bucket, so no token is spent on a frame that could not be
queued. The listener's state (cooldowns, bucket, drop counts) is written by that one thread only.

What happens to frames is counted: ``fieldtui_agent_forwards_total{outcome}`` for forwards sent (ok,
triggered, unauthorized, rate_limited, timeout, ...), ``fieldtui_agent_forwards_dropped_total{reason}``
for frames the rules let through but that were not sent (queue_full, rate_limited, backoff) and frames
held back by the cooldown (cooldown), with the queue depth and the round-trip latency beside them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.core.cameras import DEFAULT_CAMERA
from agent.core.home import AgentHome
from agent.forwarding.redact import blur_boxes
from agent.forwarding.store import ForwardingError, ForwardingStore, check_classes, endpoint
from agent.forwarding.trio import TrioClient, failure
from agent.frames.sources import redact
from fieldtui.protocol import (
    ForwardingSettings,
    ForwardingState,
    ForwardingStats,
    ForwardingUpdate,
    ForwardResult,
)

log = logging.getLogger("fieldtui.agent.forwarding")
# history rows: "forwarding" = the Trio endpoint moved (and what became of the key); this = any other change
SETTINGS_ACTION = "forwarding_settings"

JPEG_QUALITY = 85
TEST_TIMEOUT_MAX_S = 30.0  # POST /v1/forwarding/test answers within this, whatever timeout_s says
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
DROP_REASONS = ("queue_full", "rate_limited", "cooldown", "backoff")

# The latest processed frame, its detections and the class names, or None before the first frame.
Latest = Callable[[], "tuple[np.ndarray, Any, Mapping[int, str]] | None"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. Not thread-safe: the caller locks."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class _Item:
    """One frame on its way to Trio: the copy, and what the worker needs to redact and word it."""

    classes: list[str]
    camera: str | None  # where the frame came from (None: a test forward without a frame)
    image: np.ndarray | None  # None in check-once mode: Trio pulls the stream itself
    boxes: np.ndarray | None
    class_ids: np.ndarray | None
    names: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class _Rules:
    """The settings the listener needs, resolved once per change (read without a lock)."""

    cameras: frozenset[str]
    classes: frozenset[str]
    min_confidence: float
    cooldown_s: float
    copy_frame: bool
    redact: frozenset[str]


class _DropCollector(Collector):
    """``fieldtui_agent_forwards_dropped_total{reason}`` from the listener's plain counts, at scrape time."""

    def __init__(self, drops: dict[str, int]) -> None:
        self._drops = drops

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "fieldtui_agent_forwards_dropped",
            "frames the rules picked but that were not sent (or held back by the cooldown), by reason",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            family.add_metric([reason], self._drops[reason])
        yield family


class ForwardingMetrics:
    def __init__(self, registry: CollectorRegistry, depth: Callable[[], int], drops: dict[str, int]) -> None:
        self.forwards = Counter(
            "fieldtui_agent_forwards", "forwards to Trio by outcome", ["outcome"], registry=registry
        )
        registry.register(_DropCollector(drops))
        self.queue_depth = Gauge(
            "fieldtui_agent_forward_queue_depth", "frames waiting to be forwarded", registry=registry
        )
        self.queue_depth.set_function(lambda: float(depth()))
        self.latency = Histogram(
            "fieldtui_agent_forward_latency_seconds",
            "round trip of a forward to Trio",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class Forwarder:
    """Rules, queue and worker of one agent; plain class, no HTTP (routes: agent/server/api/forwarding.py)."""

    def __init__(
        self,
        home: AgentHome,
        *,
        registry: CollectorRegistry | None = None,
        latest: Latest | None = None,
        defaults: dict[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        audit: Callable[..., None] | None = None,
        cameras: Callable[[], list[str]] | None = None,
        classes: Callable[[], Iterable[str] | None] | None = None,
    ) -> None:
        self.store = ForwardingStore(home, env)
        self._cameras = cameras or (lambda: [DEFAULT_CAMERA])  # the agent's camera names, first first
        self._classes = classes or (lambda: None)  # the serving model's class names, for the rules
        self._audit = audit or (lambda reason, details, action="forwarding": None)
        self.settings = self.store.load(defaults)
        self._latest = latest or (lambda: None)
        self._lock = threading.Lock()  # the worker's client, forward counts, the last result
        self._queue: queue.Queue[_Item] = queue.Queue(self.settings.queue_size)
        self._cooldown: dict[tuple[str, str], float] = {}  # (camera, class) -> end of its cooldown
        self._backoff_until = 0.0
        self._forwards: Tally[str] = Tally()
        self._drops = dict.fromkeys(DROP_REASONS, 0)  # every key present: read while being counted
        self._last: ForwardResult | None = None
        self._last_outcome: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: tuple[tuple[str, str | None, float], TrioClient] | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ForwardingMetrics(self.registry, lambda: self._queue.qsize(), self._drops)
        self._apply(self.settings)

    # --- life -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._work, name="fieldtui-forwarder", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; a forward in flight ends at its own timeout at the latest."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("forwarding worker still waiting for Trio after %.0f s", timeout)
        with self._lock:
            if self._client is not None:
                self._client[1].close()
                self._client = None

    # --- settings ---------------------------------------------------------------------------------

    def _apply(self, settings: ForwardingSettings) -> None:
        r = settings.rules
        self.settings = settings
        self._bucket = TokenBucket(r.rate_per_minute / 60.0, r.burst)
        if self._queue.maxsize != settings.queue_size:
            self._queue = queue.Queue(settings.queue_size)  # frames waiting in the old one are let go
        self._rules: _Rules | None = (
            _Rules(
                cameras=frozenset(r.cameras),
                classes=frozenset(r.classes),
                min_confidence=r.min_confidence,
                cooldown_s=r.cooldown_s,
                copy_frame=settings.mode == "frame",
                redact=frozenset(r.redact_classes),
            )
            if settings.enabled
            else None
        )

    def update(self, update: ForwardingUpdate) -> ForwardingState:
        """Change, validate and persist settings (and the key); ForwardingError and nothing changed
        when they cannot work."""
        unknown = [c for c in (update.rules.cameras if update.rules else []) if c not in self._cameras()]
        if unknown:
            raise ForwardingError(
                f"rules.cameras names {unknown[0]!r}, which this agent does not run; its cameras: "
                f"{', '.join(self._cameras())} (nothing was changed)"
            )
        if update.rules is not None:
            check_classes(update.rules, self._classes())
        with self._lock:
            before = self.settings
            had_key = self.store.key(before) is not None
            merged = self.store.apply(before, update)
            self._cooldown.clear()
            self._apply(merged)
        log.info(
            "forwarding %s: mode %s to %s",
            "enabled" if merged.enabled else "disabled",
            merged.mode,
            redact(merged.base_url),
        )
        old, new = endpoint(before), endpoint(merged)
        if old != new:
            given = bool(update.api_key and update.api_key.strip())
            key = "replaced" if given else "cleared" if had_key else "none"
            reason = f"Trio endpoint {', '.join(old)} -> {', '.join(new)}; " + (
                "a key for it was given"
                if given
                else "the key was dropped: give api_key again for the new endpoint"
                if had_key
                else "no key was set"
            )
            log.warning("forwarding: %s", reason)
            self._audit(reason, {"from": list(old), "to": list(new), "key": key})
        self._audit_settings(before, merged, update, endpoint_moved=old != new)
        return self.state()

    def _audit_settings(
        self,
        before: ForwardingSettings,
        after: ForwardingSettings,
        update: ForwardingUpdate,
        *,
        endpoint_moved: bool,
    ) -> None:
        """One history row when a PUT changed anything besides the endpoint (that has its own row): on or
        off, mode, rules, ... by field name (values may hold a camera password), the key only as set or
        cleared. The log buffer is in memory; the history outlives a restart, so the visit report has it."""
        urls = () if endpoint_moved else ("base_url", "frame_url")
        changed = [
            name
            for name in ForwardingSettings.model_fields
            if (name not in ("base_url", "frame_url") or name in urls)
            and getattr(before, name) != getattr(after, name)
        ]
        if update.api_key is not None and not endpoint_moved:
            changed.append("api key set" if update.api_key.strip() else "api key cleared")
        if not changed:
            return
        state = "enabled" if after.enabled else "disabled"
        reason = (
            f"forwarding {state}: mode {after.mode} to {redact(after.base_url)}; changed {', '.join(changed)}"
        )
        details = {"enabled": after.enabled, "mode": after.mode, "changed": changed}
        self._audit(reason, details, SETTINGS_ACTION)

    def state(self) -> ForwardingState:
        with self._lock:
            stats = ForwardingStats(
                queue_depth=self._queue.qsize(),
                queue_capacity=self._queue.maxsize,
                forwards=dict(self._forwards),
                dropped={k: v for k, v in self._drops.items() if v},
                backoff_remaining_s=round(max(0.0, self._backoff_until - time.monotonic()), 1),
                last=self._last,
            )
        return ForwardingState(
            **self.settings.model_dump(), api_key=self.store.masked(self.settings), stats=stats
        )

    # --- the listener (postprocess thread: keep it cheap) -----------------------------------------

    def on_frame(self, image: np.ndarray, detections: Any, names: Mapping[int, str]) -> None:
        """A frame of a one-camera pipeline (the agent's first camera)."""
        self.on_camera_frame(self._cameras()[0], image, detections, names)

    def on_camera_frame(
        self, camera: str, image: np.ndarray, detections: Any, names: Mapping[int, str]
    ) -> None:
        rules = self._rules
        if rules is None or not len(detections) or (rules.cameras and camera not in rules.cameras):
            return
        ids = detections.class_ids[detections.scores >= rules.min_confidence]
        if not ids.size:
            return
        # tolist + set beats np.unique for the handful of detections a frame has
        hit = {names.get(i) or f"class_{i}" for i in set(ids.tolist())}
        if rules.classes:
            hit &= rules.classes
            if not hit:
                return
        now = time.monotonic()
        cooldown = self._cooldown
        ready = sorted(c for c in hit if cooldown.get((camera, c), 0.0) <= now)
        q = self._queue
        if not ready:
            reason = "cooldown"
        elif now < self._backoff_until:
            reason = "backoff"
        elif len(q.queue) >= q.maxsize:  # a hint without the queue's lock; put_nowait decides
            reason = "queue_full"
        elif not self._bucket.take(now):
            reason = "rate_limited"
        else:
            reason = None
        if reason is not None:
            self._drops[reason] += 1
            return
        for c in ready:
            cooldown[camera, c] = now + rules.cooldown_s
        redact = rules.copy_frame and bool(rules.redact)
        item = _Item(
            classes=ready,
            camera=camera,
            image=image.copy() if rules.copy_frame else None,
            boxes=np.array(detections.boxes) if redact else None,
            class_ids=np.array(detections.class_ids) if redact else None,
            names=names,
        )
        try:
            q.put_nowait(item)
        except queue.Full:  # the hint above raced with nothing: only this thread puts, but be safe
            self._drops["queue_full"] += 1

    # --- the worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            # Trio said 429: nothing is sent before its Retry-After has passed.
            while not self._stop.is_set() and (wait := self._backoff_until - time.monotonic()) > 0:
                self._stop.wait(wait)
            if self._stop.is_set():
                return
            try:
                result = self._forward(item, self.settings, None)
            except Exception as err:  # noqa: BLE001 - one bad frame must not end forwarding
                log.exception("forwarding a frame failed")
                result = failure("error", f"could not forward: {type(err).__name__}", mode=self.settings.mode)
            self._record(result)

    def _trio(self, settings: ForwardingSettings) -> TrioClient:
        """The worker's client, rebuilt when the base URL, key or timeout changed."""
        key = (settings.base_url, self.store.key(settings), settings.timeout_s)
        with self._lock:
            if self._client is None or self._client[0] != key:
                if self._client is not None:
                    self._client[1].close()
                self._client = (key, TrioClient(key[0], key[1], timeout=key[2]))
            return self._client[1]

    def _forward(
        self,
        item: _Item,
        settings: ForwardingSettings,
        client: TrioClient | None,
        timeout: float | None = None,
    ) -> ForwardResult:
        client = client or self._trio(settings)
        condition = settings.condition.replace("{classes}", ", ".join(item.classes) or "objects")
        condition = condition.replace("{camera}", item.camera or "the camera")
        if settings.mode == "check-once":
            if not settings.stream_url:
                result = failure(
                    "no_stream_url",
                    "check-once mode has no stream_url; nothing was sent",
                    remediation="set stream_url with PUT /v1/forwarding, or use mode 'frame'",
                    mode="check-once",
                )
            else:
                result = client.check_once(settings.stream_url, condition, timeout=timeout)
        else:
            assert item.image is not None
            jpeg = self._jpeg(item, settings)
            result = client.send_frame(
                settings.frame_url, jpeg, condition, timeout=timeout, camera=item.camera
            )
        return result.model_copy(update={"camera": item.camera}) if item.camera else result

    @staticmethod
    def _jpeg(item: _Item, settings: ForwardingSettings) -> bytes:
        import cv2

        assert item.image is not None
        if item.boxes is not None and item.class_ids is not None:
            blur_boxes(item.image, item.boxes, item.class_ids, item.names, settings.rules.redact_classes)
        ok, buf = cv2.imencode(".jpg", item.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("cv2.imencode could not encode the frame")
        return buf.tobytes()

    def _record(self, result: ForwardResult) -> None:
        self.metrics.forwards.labels(outcome=result.outcome).inc()
        if result.latency_ms is not None:
            self.metrics.latency.observe(result.latency_ms / 1000.0)
        with self._lock:
            self._forwards[result.outcome] += 1
            self._last = result
            if result.outcome == "rate_limited" and result.retry_after_s is not None and result.http_status:
                self._backoff_until = max(self._backoff_until, time.monotonic() + result.retry_after_s)
            changed, self._last_outcome = result.outcome != self._last_outcome, result.outcome
        if result.error is not None and changed:  # one line per change, not one per failed forward
            log.warning("forwarding to Trio: %s; %s", result.error.message, result.error.remediation)
        elif changed:
            log.info("forwarding to Trio: %s (%.0f ms)", result.outcome, result.latency_ms or 0.0)

    # --- one forward now ---------------------------------------------------------------------------

    def test(self, condition: str | None = None, timeout_s: float | None = None) -> ForwardResult:
        """One forward now, outside the rules and the queue (the latest frame in frame mode); answers
        within ``timeout_s`` (capped at 30 s). A back-off Trio asked for is honoured here too."""
        settings = self.settings
        if condition:
            settings = settings.model_copy(update={"condition": condition})
        timeout = min(timeout_s or settings.timeout_s, TEST_TIMEOUT_MAX_S)
        wait = self._backoff_until - time.monotonic()
        if wait > 0:
            return failure(
                "rate_limited",
                f"Trio asked to back off; {wait:.0f}s left, nothing was sent",
                retry_after_s=round(wait, 1),
                mode=settings.mode,
            )
        key = self.store.key(settings)
        if not key:
            return failure("no_key", "no Trio API key is set; nothing was sent", mode=settings.mode)
        item = _Item(classes=[], camera=None, image=None, boxes=None, class_ids=None, names={})
        if settings.mode == "frame":
            latest = self._latest()
            if latest is None:
                return failure(
                    "no_frame",
                    "no frame processed yet; nothing was sent",
                    remediation="start the pipeline (POST /v1/pipeline/start) and try again",
                    mode="frame",
                )
            image, dets, names = latest
            item.image, item.names, item.camera = image.copy(), names, self._cameras()[0]
            if len(dets):
                item.boxes, item.class_ids = np.array(dets.boxes), np.array(dets.class_ids)
                item.classes = sorted(
                    {names.get(int(i), f"class_{int(i)}") for i in np.unique(dets.class_ids)}
                )
        client = TrioClient(settings.base_url, key, timeout=timeout)
        try:
            result = self._forward(item, settings, client, timeout)
        finally:
            client.close()
        self._record(result)
        return result


def attach_forwarding(service: Any) -> Forwarder:
    """The forwarder of an :class:`~agent.server.service.AgentService`: settings from its home (defaults from
    config.toml's [forwarding]), metrics in its registry, fed by its pipeline."""
    pipeline = service.pipeline

    def latest() -> tuple[np.ndarray, Any, Mapping[int, str]] | None:
        got = pipeline.latest()
        return None if got is None else (got[0], got[1], pipeline.detector.names)

    def audit(reason: str, details: dict[str, Any], action: str = "forwarding") -> None:
        from agent.store.history import ModelHistory

        ModelHistory(service.db).add(action, None, "changed", reason=reason, details=details)

    def cameras() -> list[str]:
        if hasattr(pipeline, "cameras"):
            return [spec.name for spec in pipeline.cameras()]
        return [service.config.camera]

    def classes() -> list[str] | None:
        detector = getattr(pipeline, "detector", None)
        return list(detector.names.values()) if detector is not None else None

    forwarder = Forwarder(
        service.home,
        registry=service.metrics.registry,
        latest=latest if hasattr(pipeline, "latest") else None,
        defaults=service.config.sections.get("forwarding"),
        audit=audit,
        cameras=cameras,
        classes=classes,
    )
    if hasattr(pipeline, "add_camera_listener"):  # several cameras: forwarding hears every one
        pipeline.add_camera_listener(forwarder.on_camera_frame)
    elif hasattr(pipeline, "add_listener"):
        pipeline.add_listener(forwarder.on_frame)
    forwarder.start()
    return forwarder
