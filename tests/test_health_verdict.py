"""One health verdict, computed by the agent and shown the same everywhere: ``GET /v1/health``,
Prometheus ``fieldtui_agent_health{state}``, ``fieldtui status``, the device list's probe and the
dashboard's findings. A real agent on 127.0.0.1 serves a weak model on probation against last good v1."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.server.verdict import Baseline, health_verdict
from fieldtui.cli.main import main
from fieldtui.config import ConsoleConfig
from fieldtui.diagnosis import diagnose
from fieldtui.fleet import Fleet
from fieldtui.protocol import DeviceRecord, HealthReport, PipelineStatus, ProbationStatus, Sample, StageTimes
from tests import storemodels as sm
from tests.storeclient import activate, listing, upload, wait_for

SOURCE = "demo:?fps=20&size=320x240"


def _home(tmp_path: Path, probation_s: float) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    (home / "config.toml").write_text(f"[models]\nprobation_s = {probation_s}\nprobation_min_frames = 5\n")
    return home


def test_every_surface_shows_the_agents_one_verdict(inproc_agent, tmp_path, monkeypatch, capsys):
    files = sm.make(tmp_path / "files", "v1", "weak")
    first = inproc_agent(_home(tmp_path, 1), source=SOURCE)
    with first.client() as c:
        for name in ("v1", "weak"):
            assert upload(c, files[name], name).status_code == 201
        assert activate(c, "v1").state == "succeeded"
        wait_for(lambda: listing(c).history[0].outcome == "good", 20)  # v1 passed: last good
    first.stop()
    agent = inproc_agent(_home(tmp_path, 120), source=SOURCE)  # the same home, a long probation now
    with agent.client() as c:
        assert activate(c, "weak").state == "succeeded"  # loads, looks healthy; on probation

        def settled() -> HealthReport | None:  # the rolling window holds only weak's frames
            h = HealthReport.model_validate(c.get("/v1/health").json())
            return h if h.reasons and h.reasons[0].startswith("confidence 0.27") else None

        health = wait_for(settled, 15)
        assert health.status == "degraded"
        [reason] = health.reasons
        assert (
            reason.startswith("confidence 0.27 vs 0.9") and "for last good v1 with a healthy camera" in reason
        )
        assert health.notes[0].startswith("weak on probation for ") and health.notes[0].endswith(
            "last good v1"
        )
        metrics = c.get("/metrics").text
        assert 'fieldtui_agent_health{state="degraded"} 1.0' in metrics
        assert 'fieldtui_agent_health{state="ok"} 0.0' in metrics

    # the console: `fieldtui status`, the device list's probe, the dashboard's findings say the same
    console = tmp_path / "console"
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(console))
    port = int(agent.url.rsplit(":", 1)[1])
    record = DeviceRecord(name="dock-1", host="127.0.0.1", port=port)
    ConsoleConfig(console).save_device(record, agent.token)
    assert main(["status", "dock-1"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("health"))
    assert line.startswith("health    degraded: confidence 0.27 vs 0.9")

    async def probe() -> HealthReport:
        fleet = Fleet(ConsoleConfig(console), mdns=False)
        try:
            return (await fleet.probe(record)).health
        finally:
            await fleet.close()

    seen = asyncio.run(probe())
    assert seen.status == "degraded" and seen.reasons[0].startswith("confidence 0.27 vs 0.9")
    assert diagnose(None, seen) == seen.reasons


def _status(conf: float | None, *, drop: float = 0.0, fps: float = 20.0) -> PipelineStatus:
    sample = Sample(
        ts=0,
        fps=fps,
        latency_p50_ms=1,
        latency_p95_ms=2,
        stages_ms=StageTimes(),
        confidence_avg=conf,
        drop_rate=drop,
    )
    return PipelineStatus(state="running", sample=sample, started_at=time.time() - 60)


def test_the_verdict_weighs_confidence_against_last_good_and_takes_extra_findings():
    base = Baseline("v2", 0.98)
    assert health_verdict(_status(0.95), window_s=2, baseline=base).status == "ok"
    drift = health_verdict(_status(0.42), window_s=2, baseline=base)
    assert (drift.status, drift.reasons) == ("degraded", ["confidence 0.42 vs 0.98 for last good v2"])
    # a model whose normal confidence is low is judged against its own baseline, not the alert line
    assert health_verdict(_status(0.50), window_s=2, baseline=Baseline("v3", 0.55)).status == "ok"
    # no baseline recorded: the alert line the Prometheus rule uses
    assert health_verdict(_status(0.50), window_s=2).reasons == ["confidence 0.50 under the 0.60 alert line"]
    drops = health_verdict(_status(0.9, drop=0.4), window_s=2)
    assert drops.reasons[0].startswith("dropping 40% of frames")
    stalled = health_verdict(_status(None, fps=0.0), window_s=2, extra=[("degraded", "disk read-only")])
    assert stalled.status == "failing" and stalled.reasons == [
        "no frames processed in the last 2 s",
        "disk read-only",
    ]
    p = ProbationStatus(version="v4", previous="v3", started=0, ends=time.time() + 30, last_good="v3")
    noted = health_verdict(_status(0.9), window_s=2, probation=p)
    assert noted.status == "ok" and noted.notes[0].startswith("v4 on probation for 3")
