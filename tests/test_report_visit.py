"""The visit report over an agent restart, and over the visit's time: forwarding switched on and off is in
the agent's audit history (so a restart does not lose it), and the agent's per-minute series
(``GET /v1/series``, agent/frames/series.py; one point every 0.5 s here) is plotted in the report."""

from __future__ import annotations

import json
import socket

import httpx

from fieldtui.cli.main import main
from fieldtui.config import ConsoleConfig
from fieldtui.protocol import DeviceRecord, SeriesPage
from tests.storeclient import wait_for

TRIO_KEY = "sk-trio-visit-0123456789SECRET"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_forwarding_changes_survive_a_restart_and_the_series_is_plotted(
    inproc_agent, tmp_path, monkeypatch, capsys
):
    home = tmp_path / "device-home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 0\n\n[series]\nminute_s = 0.5\n")
    console = tmp_path / "console"
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(console))

    first = inproc_agent(home, source="demo:?fps=20&size=160x120")
    trio = f"http://127.0.0.1:{_closed_port()}/api"  # nothing listens: forwards fail, on loopback only
    with first.client() as c:
        r = c.put(
            "/v1/forwarding", json={"enabled": True, "mode": "frame", "base_url": trio, "api_key": TRIO_KEY}
        )
        assert r.status_code == 200, r.text
        assert c.put("/v1/forwarding", json={"enabled": False}).status_code == 200
        assert c.put("/v1/forwarding", json={"enabled": False}).status_code == 200  # no change: no row
    first.stop()

    agent = inproc_agent(home, source="demo:?fps=20&size=160x120")  # the same device after a restart
    with agent.client() as c:
        page = wait_for(
            lambda: (p := SeriesPage.model_validate(c.get("/v1/series").json())) and len(p.points) >= 2 and p,
            timeout=30,
        )
    assert httpx.get(f"{agent.url}/v1/series").status_code == 401  # behind the token, as /v1/status is
    assert page.minute_s == 0.5 and page.capacity == 1440
    for point in page.points:
        assert point.camera == agent.service.config.camera and point.readings >= 1 and point.fps > 0
        assert 0 < point.latency_p50_ms <= point.latency_p95_ms
    assert [p.ts for p in page.points] == sorted(p.ts for p in page.points)
    assert all(b.ts - a.ts >= 0.5 for a, b in zip(page.points, page.points[1:], strict=False))

    port = int(agent.url.rsplit(":", 1)[1])
    ConsoleConfig(console).save_device(DeviceRecord(name="dock-2", host="127.0.0.1", port=port), agent.token)
    out = tmp_path / "visit.html"
    assert main(["report", "--since", "1h", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [dock] = report["devices"]
    forwarding = [a["reason"] for a in dock["actions"] if a["what"] == "forwarding"]
    assert len(forwarding) == 3, forwarding  # the endpoint moved, then on, then off; not the no-op
    assert any(r.startswith("forwarding enabled: mode frame to http://127.0.0.1:") for r in forwarding)
    assert any(r.startswith("forwarding disabled:") and r.endswith("changed enabled") for r in forwarding)
    assert len(dock["series"]["points"]) >= 2

    html = out.read_text()
    assert "forwarding enabled: mode frame" in html and "forwarding disabled" in html
    assert "Latency over the visit" in html and "every 0.5 s" in html
    latency_svg = html[html.index('aria-label="Latency over the visit"') :]
    latency_svg = latency_svg[: latency_svg.index("</svg>")]
    assert (
        latency_svg.count("<polyline") == 2 and ">p50</text>" in latency_svg and ">p95</text>" in latency_svg
    )
    for secret in (agent.token, TRIO_KEY, TRIO_KEY[-4:]):
        assert secret not in html and secret not in json.dumps(report)


def test_the_agent_cli_report_without_a_serving_agent_reads_state_db(tmp_path, capsys):
    """``fieldtui-agent report --json`` (what the SSH path reads) when no agent serves from the home:
    the benchmarks from state.db, and a note saying what only a running agent has."""
    from agent.bench.history import BenchmarkHistory
    from agent.cli.main import main as agent_main
    from agent.core.home import AgentHome
    from agent.core.state import StateDB
    from fieldtui.protocol import BenchmarkConfig, BenchmarkResult, BenchmarkRun, LatencyStats
    from fieldtui.protocol.visit import VisitFacts

    home = AgentHome(tmp_path / "home").ensure()
    db = StateDB(home.state_db)
    result = BenchmarkResult(
        config=BenchmarkConfig(backend="onnxruntime"),
        status="ok",
        latency=LatencyStats(p50_ms=3.2),
        fps=300.0,
    )
    run = BenchmarkRun(
        id="run-1", created=1.0, device_id="d", model_sha256="0" * 64, model="v1", results=[result]
    )
    BenchmarkHistory(db).save(run)
    db.close()

    assert agent_main(["report", "--home", str(home.root), "--json"]) == 0
    facts = VisitFacts.model_validate_json(capsys.readouterr().out)
    assert [r.id for r in facts.benchmarks] == ["run-1"] and facts.benchmarks[0].results[0].fps == 300.0
    assert facts.snapshot_jpeg_b64 is None and facts.forwarding is None and facts.series is None
    assert facts.snapshot_error.startswith(f"no agent serves from {home.root}")
    assert facts.notes == [
        f"no agent serves from {home.root}: forwarding state, the per-minute series and the snapshot were not read"
    ]


def test_the_series_keeps_a_fixed_number_of_points_per_camera():
    """24 hours at one point a minute is 1440 points: the ring never holds more than its capacity."""
    from agent.frames.series import MinuteSeries, SeriesSettings
    from fieldtui.protocol import Sample, StageTimes

    def sample(camera: str, p50: float, conf: float | None = 0.8, fps: float = 10.0) -> Sample:
        stages = StageTimes(capture=0, preprocess=0, infer=p50, postprocess=0)
        return Sample(
            ts=0, fps=fps, latency_p50_ms=p50, latency_p95_ms=2 * p50, stages_ms=stages,
            confidence_avg=conf, drop_rate=0.0, camera_name=camera,
        )  # fmt: skip

    series = MinuteSeries(lambda: [], SeriesSettings(minute_s=60, capacity=10))
    for minute in range(30):
        for second in (0, 20, 40):
            series.add(sample("gate", 10.0 + second), minute * 60 + second)
            series.add(sample("dock", 5.0, conf=None), minute * 60 + second)
        series.add(sample("gate", 99.0, fps=0.0), minute * 60 + 50)  # no frames: not a reading
    series.roll(30 * 60)
    gate = series.page(camera="gate").points
    assert len(gate) == 10 and [p.ts for p in gate] == [m * 60 for m in range(20, 30)]
    assert {(p.readings, p.latency_p50_ms, p.latency_p95_ms, p.fps, p.confidence_avg) for p in gate} == {
        (3, 30.0, 100.0, 10.0, 0.8)
    }
    assert len(series.page().points) == 20 and series.page(since=29 * 60 + 1).points[0].ts == 29 * 60
    assert {p.confidence_avg for p in series.page(camera="dock").points} == {None}
