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
