"""The visit report: what a technician changed on each device during a visit, and whether it works.

:func:`collect` asks every device what it did since the visit began - from the agent's own audit
history, so what was done over SSH or by another console counts too:

- ``GET /v1/models``: the store's history (uploads, activations, rollbacks, removals, with outcome and
  reason; agent/store/history.py) with the forwarding changes the agent records there (on or off,
  endpoint, rules), and what serves now with its sha256;
- ``GET /v1/benchmarks``: benchmark runs, each result compared with the previous run of the same
  configuration, in the words of ``fieldtui bench`` (fieldtui/protocol/benchnoise.py decides);
- ``GET /v1/jobs``: engine rebuilds, source changes and restarts, with their error when they failed;
- ``GET /v1/series``: latency, FPS and confidence a minute at a time over the visit (agent/frames/series.py);
- ``GET /v1/health``, ``/v1/device``, ``/v1/status``, ``/v1/snapshot.jpg``: the state at the end.

A device HTTP cannot reach is asked over SSH when it was paired so: ``fieldtui-agent status``, ``models
list`` and ``report --json`` (agent/cli/visit.py) give the same facts. A saved device that does not answer is listed with what the console last knew and when it last saw it.
The result is a plain JSON-able dict (``fieldtui report --json``); fieldtui/report_html.py renders it.
Nothing secret enters it: no token, the forwarding key is left out, every string passes through
:func:`fieldtui.redact.redact` (camera URIs are also redacted by the agent).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldtui.client import AgentClient
from fieldtui.config import SavedDevice
from fieldtui.errors import AgentClientError, AgentUnauthorized, ConsoleError
from fieldtui.protocol import (
    CameraStatus,
    Comparison,
    DeviceInfo,
    DeviceRecord,
    HealthReport,
    PipelineStatus,
    SSHEndpoint,
    comparison_text,
    verdict_of,
    with_console_hint,
)
from fieldtui.protocol import __version__ as console_version
from fieldtui.protocol.files import atomic_write
from fieldtui.redact import redact

HISTORY_ROWS = 50  # GET /v1/models lists the store's newest 50 history rows (agent/store/catalog.py)
DEFAULT_SINCE_S = 12 * 3600  # a working day: what "the visit" means when --since is not given
FAILED_OUTCOMES = {"failed", "refused", "rolled_back", "interrupted"}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


class ReportError(ConsoleError):
    """A --since the console cannot read; the message says what to write."""


def parse_since(text: str | None, now: float | None = None) -> float:
    """``90m``, ``2h``, ``1d`` (ago), an ISO time (``2026-12-01T09:30``, local unless it has a zone) or
    epoch seconds; None: :data:`DEFAULT_SINCE_S` ago."""
    now = time.time() if now is None else now
    if text is None:
        return now - DEFAULT_SINCE_S
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now - float(match.group(1)) * scale
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"--since {text!r}: write how long ago (90m, 2h, 1d) or a time (2026-12-01T09:30)"
        ) from None
    return when.timestamp() if when.tzinfo else when.astimezone().timestamp()


def _clean(value: Any) -> Any:
    """Every string redacted (URI passwords, secret query parameters), recursively."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _reached(record: DeviceRecord) -> str:
    """``HTTPS (pinned); found by mdns, saved``: the link, and how the console came to know the device
    (``probe``: it answered a subnet probe where mDNS could not reach)."""
    origins = ", ".join(record.origin) or "added by hand"
    link = "HTTPS (pinned)" if record.tls and record.tls_fingerprint else "HTTPS" if record.tls else "HTTP"
    return f"{link}; found by {origins}"


def _sha_of(models: dict[str, Any], version: str | None) -> str | None:
    for v in models.get("versions", []):
        if v["version"] == version:
            return v["manifest"]["sha256"][:12]
    return None


def _model_change(models: dict[str, Any], since: float) -> dict[str, Any]:
    """What served before the visit and what serves now, from the store's history."""
    serving = models.get("serving") or {}
    after = {"version": serving.get("version"), "sha256": (serving.get("sha256") or "")[:12] or None}
    after["label"] = after["version"] or serving.get("path") or "nothing"
    rows = sorted(models.get("history", []), key=lambda r: r["id"])
    serving_rows = [
        r for r in rows if r["ts"] >= since and r["action"] in ("activate", "rollback", "auto_rollback")
    ]
    if serving_rows:
        first = serving_rows[0]
        version = first["previous"]
        before = {
            "version": version,
            "sha256": _sha_of(models, version),
            "label": version or "configured model",
        }
    else:
        before = dict(after)
    return {"before": before, "after": after, "changed": before.get("version") != after.get("version")}


def _actions(models: dict, jobs: list[dict], since: float) -> list[dict[str, Any]]:
    """Every change during the visit, oldest first: what, on which version, outcome, reason."""
    out: list[dict[str, Any]] = []
    for r in models.get("history", []):
        if r["ts"] < since or r["action"] == "startup":
            continue
        what = {
            "upload": "push",
            "auto_rollback": "automatic rollback",
            "forwarding_settings": "forwarding",  # on or off, mode, rules, key (the endpoint: "forwarding")
        }.get(r["action"], r["action"])
        target = "" if what == "forwarding" else r["version"] or "configured model"
        if r["action"] in ("activate", "rollback", "auto_rollback") and r.get("previous") != r["version"]:
            target = f"{r.get('previous') or 'configured model'} -> {target}"
        details = r.get("details") or {}
        figures = details.get("probation") or {}
        check = details.get("health") or {}  # the check before the swap: both models on the same frames
        sha = (details.get("sha256") or "")[:12]
        if what == "push" and sha:
            target = f"{target} (sha256 {sha})"
        out.append(
            {
                "ts": r["ts"],
                "what": what,
                "target": target,
                "outcome": r["outcome"],
                "reason": r.get("reason") or "",
                "failed": r["outcome"] in FAILED_OUTCOMES,
                "confidence": figures.get("confidence"),
                "infer_ms": figures.get("infer_ms") or check.get("new_infer_ms"),
                "infer_ms_before": check.get("current_infer_ms"),
                "sha256": sha or None,
            }
        )
    for j in jobs:
        # model jobs are in the store's history already, with their reason; benchmarks have their own section
        if j["created"] < since or j["kind"].startswith(("model.", "benchmark")):
            continue
        what = {
            "engine.rebuild": "rebuild",
            "pipeline.source": "camera source",
            "pipeline.restart": "restart",
        }
        params = j.get("params") or {}
        target = params.get("uri") or params.get("backend") or ""
        out.append(
            {
                "ts": j["created"],
                "what": what.get(j["kind"], j["kind"]),
                "target": str(target),
                "outcome": j["state"],
                "reason": j.get("error") or j.get("stage") or "",
                "failed": j["state"] == "failed",
            }
        )
    return sorted(out, key=lambda a: a["ts"])


def _benchmarks(runs: list[dict], since: float, host: str) -> dict[str, Any]:
    """Runs during the visit (each result with its change against the previous run of the same
    configuration), and the newest run before the visit, for a before/after."""
    during = [r for r in runs if r["created"] >= since]
    before = [r for r in runs if r["created"] < since]
    rows = []
    for run in sorted(during, key=lambda r: r["created"]):
        for res in run["results"]:
            c = res["config"]
            cmp_ = Comparison.model_validate(res["comparison"]) if res.get("comparison") else None
            rows.append(
                {
                    "ts": run["created"],
                    "model": run["model"],
                    "sha256": run["model_sha256"][:12],
                    "config": f"{c['mode']} {c['backend']} {c['precision']} batch {c['batch']}",
                    "status": res["status"],
                    "reason": with_console_hint(res.get("reason"), host),
                    "p50_ms": (res.get("latency") or {}).get("p50_ms"),
                    "fps": res.get("fps"),
                    # the one verdict (fieldtui/protocol/benchnoise.py) and the words the CLI and TUI use
                    "verdict": verdict_of(cmp_) if cmp_ else None,
                    "change": comparison_text(cmp_),
                    "noise_pct": cmp_.noise_pct if cmp_ else None,
                    "p50_change_pct": cmp_.p50_change_pct if cmp_ else None,
                    "fps_change_pct": cmp_.fps_change_pct if cmp_ else None,
                }
            )
    last_before = max(before, key=lambda r: r["created"]) if before else None
    return {"results": rows, "before_visit": last_before["id"] if last_before else None}


@dataclass
class _Facts:
    """What one device said, over whichever link answered."""

    health: HealthReport
    info: DeviceInfo
    status: PipelineStatus
    models: dict[str, Any]
    reached: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    forwarding: dict[str, Any] | None = None
    series: dict[str, Any] | None = None
    snapshot: str | None = None
    snapshot_error: str | None = None
    cameras: list[dict[str, Any]] = field(default_factory=list)  # a device with several: each one's
    limits: list[str] = field(default_factory=list)


def _jpeg_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


async def _over_http(entry: SavedDevice, since: float, timeout: float, width: int) -> _Facts:
    record = entry.device
    async with AgentClient.for_device(record, entry.token, timeout=timeout) as agent:
        facts = _Facts(
            health=await agent.health(),
            info=await agent.device(),
            status=await agent.status(),
            models=(await agent.models()).model_dump(mode="json"),
            reached=_reached(record),
            jobs=[j.model_dump(mode="json") for j in await agent.jobs(limit=500)],
            runs=[r.model_dump(mode="json") for r in (await agent.benchmarks(limit=200)).runs],
            forwarding=(await agent.forwarding()).model_dump(mode="json", exclude={"api_key"}),
        )
        try:
            facts.series = (await agent.series(since)).model_dump(mode="json")
        except AgentClientError as err:  # an agent older than the console has no series
            facts.limits.append(f"latency and confidence over the visit ({err})")
        try:
            cameras = (await agent.cameras()).cameras
        except AgentClientError as err:  # an agent older than the cameras API: its one camera below
            facts.limits.append(f"each camera of the device ({err})")
            cameras = []
        if len(cameras) > 1:  # each camera's own snapshot; the device's would repeat the first one's
            facts.cameras = [await _camera_facts(agent, cam, width) for cam in cameras]
            return facts
        try:
            facts.snapshot = _jpeg_uri(await agent.snapshot_jpeg(width=width))
        except AgentClientError as err:
            facts.snapshot_error = str(err)
    return facts


async def _camera_facts(agent: AgentClient, cam: CameraStatus, width: int) -> dict[str, Any]:
    """One camera of a multi-camera device at the end of the visit: state, health, snapshot."""
    health = cam.sample.camera if cam.sample else None
    facts: dict[str, Any] = {
        "name": cam.name,
        "enabled": cam.enabled,
        "source": cam.source.uri,
        "up": cam.source.up,
        "reason": cam.source.reason or cam.error or ("disabled" if not cam.enabled else None),
        "health": health.model_dump(mode="json") if health else None,
        "snapshot": None,
        "snapshot_error": None,
    }
    try:
        facts["snapshot"] = _jpeg_uri(await agent.camera_snapshot_jpeg(cam.name, width=width))
    except AgentClientError as err:
        facts["snapshot_error"] = str(err)
    return facts


async def _over_ssh(endpoint: SSHEndpoint, why_not_http: str, since: float, width: int) -> _Facts:
    """``fieldtui-agent status | models list | report --json`` over SSH, for a device HTTP cannot reach:
    the same history, jobs, benchmarks, forwarding, series and snapshot (agent/cli/visit.py)."""
    from fieldtui.link.ssh import SSHLink
    from fieldtui.protocol.visit import VisitFacts
    from fieldtui.ssh import RemoteCommandFailed

    async with SSHLink(endpoint) as link:
        status = await link.status()
        models = await link.models()
        try:
            visit = await link.visit_facts(since, width)
        except RemoteCommandFailed as err:  # a fieldtui-agent older than the console: no `report`
            visit = VisitFacts(
                snapshot_error="not read over SSH",
                notes=[f"over SSH, jobs, benchmarks, forwarding, the series and the snapshot ({err})"],
            )
    return _Facts(
        health=status.health,
        info=status.device,
        status=status.status,
        models=models.model_dump(mode="json"),
        reached=f"SSH ({endpoint.host}); HTTP did not answer: {why_not_http}",
        jobs=[j.model_dump(mode="json") for j in visit.jobs],
        runs=[r.model_dump(mode="json") for r in visit.benchmarks],
        forwarding=None
        if visit.forwarding is None
        else visit.forwarding.model_dump(mode="json", exclude={"api_key"}),
        series=None if visit.series is None else visit.series.model_dump(mode="json"),
        snapshot=_jpeg_uri(base64.b64decode(visit.snapshot_jpeg_b64)) if visit.snapshot_jpeg_b64 else None,
        snapshot_error=visit.snapshot_error,
        limits=list(visit.notes),
    )


async def _device(entry: SavedDevice, since: float, timeout: float, snapshot_width: int) -> dict[str, Any]:
    record = entry.device
    base = {
        "name": record.name,
        "id": record.id,
        "address": f"{record.host}:{record.port}",
        "reached": _reached(record),
        "last_seen": record.last_seen,
    }
    try:
        facts = await _over_http(entry, since, timeout, snapshot_width)
    except AgentClientError as err:
        error = str(err)
        if isinstance(err, AgentUnauthorized) and not entry.token:
            # it answered /v1/health; its history needs the token the console does not hold
            error = f"it answers, but no token is saved for it: pair it (`fieldtui pair {record.host}`) to report on it"
        facts = None
        if record.ssh is not None:
            try:
                facts = await _over_ssh(record.ssh, error, since, snapshot_width)
            except (ConsoleError, OSError) as ssh_err:
                error = f"{error}; over SSH ({record.ssh.host}): {ssh_err}"
        if facts is None:
            return {
                **base,
                "reachable": False,
                "error": error,
                "last_known": {"version": record.version, "model": record.model, "backend": record.backend},
            }
    status, info, health = facts.status, facts.info, facts.health
    sample = status.sample
    camera = sample.camera if sample else None
    source = status.source
    live = sample.model_dump(mode="json", include={"fps", "latency_p50_ms", "confidence_avg", "drop_rate"})
    forwarding = facts.forwarding
    history = facts.models.get("history", [])
    if history and len(history) >= HISTORY_ROWS and min(r["ts"] for r in history) >= since:
        facts.limits.append(f"store changes older than the agent's last {len(history)} (it lists no more)")
    return {
        **base,
        "reachable": True,
        "id": info.id,
        "device_name": info.name,  # what the device calls itself; "name" is what the console saved
        "reached": facts.reached,
        "last_seen": time.time(),
        "platform": f"{info.platform} {info.machine}",
        "accelerators": info.accelerators,
        "agent_version": info.version,
        "health": {"status": health.status, "reasons": health.reasons, "notes": health.notes},
        "pipeline": {"state": status.state, "error": status.error},
        "live": live if sample else None,
        "camera": {
            "source": source.uri if source else None,
            "up": source.up if source else False,
            "reason": source.reason if source else None,
            "health": camera.model_dump(mode="json") if camera else None,
            "snapshot": facts.snapshot,
            "snapshot_error": facts.snapshot_error,
        },
        "cameras": facts.cameras,
        "model": _model_change(facts.models, since),
        "actions": _actions(facts.models, facts.jobs, since),
        "benchmarks": _benchmarks(facts.runs, since, record.name),
        "forwarding": None
        if forwarding is None
        else {k: forwarding[k] for k in ("enabled", "mode", "base_url", "stats")},
        "series": facts.series,
        "limits": facts.limits,
    }


def failures_of(devices: list[dict[str, Any]]) -> list[str]:
    """Everything that failed, one line each: changes that failed, failed benchmark configurations,
    health that is not ok (with its reasons), a camera that is down, devices that did not answer."""
    out: list[str] = []
    for d in devices:
        name = d["name"]
        if not d["reachable"]:
            out.append(f"{name}: not reachable: {d['error']}")
            continue
        for a in d["actions"]:
            if a["failed"]:
                out.append(f"{name}: {a['what']} {a['target']}: {a['outcome']}: {a['reason']}".rstrip(": "))
        for r in d["benchmarks"]["results"]:
            if r["status"] == "failed":
                out.append(f"{name}: benchmark {r['config']} failed: {r['reason']}")
        if d["health"]["status"] != "ok":
            out.append(f"{name}: health {d['health']['status']}: {'; '.join(d['health']['reasons'])}")
        for cam in d.get("cameras") or [{**d["camera"], "name": None, "enabled": True}]:
            if cam["enabled"] and not cam["up"]:
                which = f"camera {cam['name']}" if cam["name"] else "camera"
                out.append(f"{name}: {which} down: {cam['reason'] or 'no frames'}")
    return out


async def collect(
    entries: list[SavedDevice],
    since: float,
    *,
    timeout: float = 5.0,
    snapshot_width: int = 480,
    site: str = "",
) -> dict[str, Any]:
    """The visit report of these devices (asked at once; one that does not answer is listed as such)."""
    devices = await asyncio.gather(*(_device(e, since, timeout, snapshot_width) for e in entries))
    failures = failures_of(devices)
    return _clean(
        {
            "site": site,
            "since": since,
            "generated": time.time(),
            "console_version": console_version,
            "devices": devices,
            "failures": failures,
        }
    )


async def write_report(
    entries: list[SavedDevice], since: float, path: Path, *, site: str = "", timeout: float = 5.0
) -> dict[str, Any]:
    """Collect and write the HTML file at ``path`` (whole or not at all); returns the report."""
    from fieldtui.report_html import render

    if not path.parent.is_dir():
        raise ReportError(f"cannot write {path}: directory {path.parent} does not exist")
    report = await collect(entries, since, timeout=timeout, site=site)
    try:
        # 0644: a report is made to be handed over; it holds no secret
        atomic_write(path, render(report).encode("utf-8"), mode=0o644)
    except OSError as err:
        raise ReportError(f"cannot write {path}: {err.strerror}") from None
    return report
