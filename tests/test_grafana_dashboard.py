"""packaging/grafana/fieldtui-agent.json: one repeated row per device, the panels a technician expects,
and PromQL that only names metrics a live agent exports (and that promtool can parse)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.test_prometheus_rules import (
    PROMTOOL,
    multi_camera_names,
    needs_promtool,
    promql_metric_names,
    promtool,
    scrape_when_ready,
)

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "packaging" / "grafana" / "fieldtui-agent.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for p in dashboard["panels"]:
        panels.append(p)
        panels.extend(p.get("panels", []))  # a collapsed row keeps its panels inside
    return panels


def exprs(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])]
        for p in all_panels(dashboard)
        if p["type"] != "row"
    }


def test_one_row_per_device(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    device = variables["device"]
    assert device["multi"] and device["includeAll"]
    assert "device_name" in device["definition"] and 'job="fieldtui-agent"' in device["definition"]
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert len(rows) == 1 and rows[0]["repeat"] == "device" and "$device" in rows[0]["title"]
    # every query is scoped to the row's device and the scrape job
    for title, queries in exprs(dashboard).items():
        assert queries, title
        for q in queries:
            assert 'device_name=~"$device"' in q and 'job="fieldtui-agent"' in q, (title, q)


def test_the_panels_a_technician_expects(dashboard: dict[str, Any]) -> None:
    by_title = {p["title"]: p for p in all_panels(dashboard)}
    text = json.dumps(exprs(dashboard))
    for q in ("histogram_quantile(0.5,", "histogram_quantile(0.95,"):
        assert q in text
    for name in ("inference_latency_seconds_bucket", "fieldtui_agent_fps", "model_confidence_avg",
                 "frame_drop_rate", "detections_total", "fieldtui_agent_camera_ok"):  # fmt: skip
        assert name in text, name
    confidence = by_title["Detection confidence"]["fieldConfig"]["defaults"]
    assert [s["value"] for s in confidence["thresholds"]["steps"]] == [None, 0.6]
    assert confidence["custom"]["thresholdsStyle"]["mode"] == "line"
    assert "class_name" in json.dumps(by_title["Detections per second by class"]["targets"])


def test_queries_name_only_metrics_a_live_agent_exports(agent_proc, dashboard: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    _, exported = scrape_when_ready(agent_proc.url)
    exported |= multi_camera_names()  # the per-camera panels: what a multi-camera agent adds
    for title, queries in exprs(dashboard).items():
        for q in queries:
            unknown = promql_metric_names(q) - exported - {"up"}  # up: Prometheus's own, per target
            assert not unknown, f"panel {title!r} queries {sorted(unknown)}, which the agent does not export"


@needs_promtool
def test_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, Grafana's variables filled in."""
    assert PROMTOOL is not None
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, q in enumerate(q for qs in exprs(dashboard).values() for q in qs):
        filled = re.sub(r"\$__rate_interval", "1m", q).replace("$device", "dock-cam").replace("$camera", ".*")
        lines += [f"      - record: dashboard_query_{n}", f"        expr: {json.dumps(filled)}"]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text("\n".join(lines) + "\n")
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_camera_variable_and_per_camera_panels(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    camera = variables["camera"]
    assert camera["multi"] and camera["includeAll"] and camera["allValue"] == ".*"
    assert camera["definition"].startswith("label_values(fieldtui_agent_camera_enabled{")
    assert camera["definition"].endswith(", camera)") and 'device_name=~"$device"' in camera["definition"]
    per_camera = {t: q for t, q in exprs(dashboard).items() if t.startswith("Per camera:")}
    assert len(per_camera) == 5
    for title, queries in per_camera.items():
        for q in queries:
            assert 'camera=~"$camera"' in q, (title, q)
    text = json.dumps(per_camera)
    for name in ("fieldtui_agent_camera_fps", "fieldtui_agent_frame_latency_seconds_bucket",
                 "fieldtui_agent_camera_confidence_avg", "fieldtui_agent_camera_drop_rate",
                 "fieldtui_agent_camera_source_up", "fieldtui_agent_camera_health_ok"):  # fmt: skip
        assert name in text, name
    by_title = {p["title"]: p for p in all_panels(dashboard)}
    assert all("{{camera}}" in t["legendFormat"] for t in by_title["Per camera: FPS"]["targets"])
    steps = by_title["Per camera: detection confidence"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.6]
