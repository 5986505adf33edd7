"""packaging/prometheus: promtool checks the scrape config (with a file_sd file written by the console's
own writer), the alert rules and their unit tests, and the exposition of a live agent's /metrics.

promtool comes with Debian's ``prometheus`` package; ``.ci/run`` installs it when it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fieldtui.cli.main import write_prometheus_sd
from fieldtui.protocol import DeviceRecord, DiscoveryResult

REPO = Path(__file__).resolve().parent.parent
PROM = REPO / "packaging" / "prometheus"
RULES = PROM / "rules" / "fieldtui.rules.yml"
JOB = "fieldtui-agent"
# labelled per engine: a device with no engine (the agent these tests start) has no series of it;
# tests/test_engines_api.py reads it from /metrics once an engine exists
PER_ENGINE = {"fieldtui_agent_engine_stale"}
# labelled per model version tried on the device: none before the first activation;
# tests/test_registry_watch.py reads them from /metrics after activations and probations
PER_VERSION = {"fieldtui_agent_activations_total", "fieldtui_agent_probations_total"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool missing: apt-get install --no-install-recommends prometheus (.ci/run does it)",
)

# --- PromQL names, shared with the Grafana dashboard test ------------------------------------------

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords, label names
    inside ``{}``/``by ()``, strings, durations or Grafana ``$variables``."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def scrape_when_ready(agent_url: str) -> tuple[str, set[str]]:
    """A live agent's exposition and every sample name in it (``_bucket``, ``_total``, ...), once frames
    flow: the scrape-time state gauges exist only then."""
    deadline = time.monotonic() + 60
    while True:
        body = httpx.get(f"{agent_url}/metrics", timeout=10.0).text
        names = {s.name for fam in text_string_to_metric_families(body) for s in fam.samples}
        if "fieldtui_agent_camera_ok" in names or time.monotonic() > deadline:
            return body, names
        time.sleep(0.2)


def multi_camera_names() -> set[str]:
    """Sample names only a multi-camera agent exports (``fieldtui_agent_camera_*{camera}``, the frame
    latency), from the agent's own per-camera metrics with one running camera's state."""
    from prometheus_client import generate_latest

    from agent.frames.camera_metrics import CameraMetrics, CameraState
    from agent.frames.metrics import AgentMetrics

    cm = CameraMetrics(AgentMetrics())
    cm.set_state_provider(lambda: [CameraState("front", True, 5.0, 0.1, 0.8, True, True)])
    cm.frames.labels(camera="front").inc()
    cm.frame_latency.labels(camera="front").observe(0.05)
    body = generate_latest(cm.agent.registry).decode()
    return {s.name for fam in text_string_to_metric_families(body) for s in fam.samples}


def test_promql_metric_names() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, device_name) (rate(inference_latency_seconds_bucket"
        '{device_name=~"$device"}[$__rate_interval]))) > on(instance) group_left up offset 5m'
    )
    assert promql_metric_names(expr) == {"inference_latency_seconds_bucket", "up"}
    assert promql_metric_names("avg_over_time(model_confidence_avg[1m]) < 0.60") == {"model_confidence_avg"}


# --- promtool ---------------------------------------------------------------------------------------


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """packaging/prometheus copied as installed, with a targets file from the console's file_sd writer."""
    root = tmp_path / "prometheus"
    shutil.copytree(PROM, root)
    (root / "targets").mkdir()
    devices = [
        DeviceRecord(id="a1", name="dock-cam", host="10.0.0.5", model="v3", backend="onnxruntime"),
        DeviceRecord(id="b2", name="gate-cam", host="fe80::5", port=8471, tls=True, backend="hailo"),
    ]
    write_prometheus_sd(root / "targets" / "fieldtui.json", DiscoveryResult(devices=devices))
    return root


@needs_promtool
def test_config_is_valid_and_finds_the_targets_file(site: Path) -> None:
    done = promtool("check", "config", str(site / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr  # e.g. a file_sd path that does not exist


@needs_promtool
def test_service_discovery_reads_what_fieldtui_discover_writes(site: Path) -> None:
    done = promtool("check", "service-discovery", "--timeout=3s", str(site / "prometheus.yml"), JOB)
    assert done.returncode == 0, done.stderr
    targets = {t["labels"]["device_name"]: t["labels"] for t in json.loads(done.stdout)}
    assert set(targets) == {"dock-cam", "gate-cam"}
    dock, gate = targets["dock-cam"], targets["gate-cam"]
    assert dock["instance"] == "10.0.0.5:8470"
    assert (dock["__scheme__"], dock["__metrics_path__"], dock["job"]) == ("http", "/metrics", JOB)
    assert (dock["device_id"], dock["model"], dock["backend"]) == ("a1", "v3", "onnxruntime")
    assert (gate["instance"], gate["__scheme__"]) == ("[fe80::5]:8471", "https")


def alert_rules() -> dict[str, str]:
    """alert name -> expr, read with a regex (every expr is one line; promtool checks the YAML itself)."""
    pairs = re.findall(r"- alert: (\w+)\n(?:\s*#.*\n)*\s*expr: (.+)", RULES.read_text())
    assert len(pairs) == 9, pairs
    return dict(pairs)


def test_rules_use_the_scrape_job_name() -> None:
    config = (PROM / "prometheus.yml").read_text()
    assert re.findall(r"job_name: (\S+)", config) == [JOB]
    assert "\n  - rules/fieldtui.rules.yml\n" in config
    for alert, expr in alert_rules().items():
        assert f'job="{JOB}"' in expr, alert


@needs_promtool
def test_rules_are_valid() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "9 rules found" in done.stdout


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(PROM / "tests" / "fieldtui.rules.test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_rule_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: 0.60 -> 0.40 must fail them."""
    shutil.copytree(PROM, tmp_path / "p")
    rules = tmp_path / "p" / "rules" / "fieldtui.rules.yml"
    text = rules.read_text()
    assert "< 0.60" in text
    rules.write_text(text.replace("< 0.60", "< 0.40"))
    done = promtool("test", "rules", str(tmp_path / "p" / "tests" / "fieldtui.rules.test.yml"))
    assert done.returncode != 0
    assert "FieldtuiLowConfidence" in done.stdout + done.stderr


@pytest.fixture
def live_metrics(agent_proc) -> tuple[str, set[str]]:  # type: ignore[no-untyped-def]
    return scrape_when_ready(agent_proc.url)


@needs_promtool
def test_live_agent_metrics_pass_promtool_check_metrics(live_metrics: tuple[str, set[str]]) -> None:
    body, _ = live_metrics
    done = promtool("check", "metrics", stdin=body)
    # promtool prints one line per lint problem (naming, units, missing HELP) and exits 1
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_rules_only_use_metrics_the_agent_exports(live_metrics: tuple[str, set[str]]) -> None:
    _, exported = live_metrics
    assert {"inference_latency_seconds_bucket", "frame_drop_rate", "fieldtui_agent_camera_ok"} <= exported
    per_camera = multi_camera_names()
    assert {"fieldtui_agent_camera_confidence_avg", "fieldtui_agent_camera_enabled"} <= per_camera
    exported = exported | per_camera
    for alert, expr in alert_rules().items():
        unknown = promql_metric_names(expr) - exported - {"up"} - PER_ENGINE - PER_VERSION
        assert not unknown, f"{alert} uses {sorted(unknown)}, which no agent exports"


def test_camera_alerts_name_the_camera_on_a_multi_camera_agent() -> None:
    """Each camera alert reads the per-camera series (and so carries the camera label) and leaves out
    the device-level series of a multi-camera agent; its summary names the camera."""
    rules, text = alert_rules(), RULES.read_text()
    for alert, per_camera in (
        ("FieldtuiLowConfidence", "fieldtui_agent_camera_confidence_avg"),
        ("FieldtuiCameraUnhealthy", "fieldtui_agent_camera_health_ok"),
        ("FieldtuiSourceDown", "fieldtui_agent_camera_source_up"),
        ("FieldtuiFrameDrops", "fieldtui_agent_camera_drop_rate"),
    ):
        assert per_camera in rules[alert], alert
        assert "unless on(job, instance) fieldtui_agent_camera_enabled" in rules[alert], alert
        block = text.split(f"- alert: {alert}\n", 1)[1].split("- alert:", 1)[0]
        assert "{{ with $labels.camera }} camera {{ . }}{{ end }}" in block, alert
