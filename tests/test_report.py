"""``fieldtui report``: the visit report against a real agent on 127.0.0.1 - what was pushed, activated,
changed and what failed, from the agent's own history; no secret in the file; a saved device that does
not answer listed with when it was last seen; and the file opened in headless Chromium, offline."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from fieldtui.cli.main import main
from fieldtui.config import ConsoleConfig
from fieldtui.protocol import DeviceRecord
from fieldtui.report import ReportError, failures_of, parse_since
from tests import storemodels as sm
from tests.storeclient import wait_for

TRIO_KEY = "sk-trio-0123456789abcdefSECRET"
CAMERA_PASSWORD = "hunter2camPW"
LAST_SEEN = time.time() - 3 * 3600


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing answers there


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "console"
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def report_files(inproc_agent, tmp_path, console, capsys):
    """A visit on a real agent: push + activate v1, a Trio key set, a camera URI with a password that
    cannot open (a failed change), a benchmark; then ``fieldtui report`` (HTML and JSON)."""
    home = tmp_path / "device-home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 0\n")
    agent = inproc_agent(home, source="demo:?fps=20&size=160x120")
    port = int(agent.url.rsplit(":", 1)[1])
    config = ConsoleConfig(console)
    config.save_device(
        DeviceRecord(name="dock-1", host="127.0.0.1", port=port, origin=["saved"]), agent.token
    )
    gone = DeviceRecord(
        name="roof-cam",
        host="127.0.0.1",
        port=_closed_port(),
        origin=["saved"],
        version="0.0.9",
        model="yard-v3",
        backend="onnxruntime",
        last_seen=LAST_SEEN,
    )
    config.save_device(gone, "roof-token-should-not-leak")

    files = sm.make(tmp_path / "files", "v1")
    assert main(["push", "dock-1", str(files["v1"]), "--version", "v1", "--activate"]) == 0
    with agent.client() as c:
        r = c.put("/v1/forwarding", json={"api_key": TRIO_KEY, "enabled": False})
        assert r.status_code == 200, r.text
        r = c.put("/v1/pipeline/source", json={"uri": f"rtsp://admin:{CAMERA_PASSWORD}@127.0.0.1:1/cam"})
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        wait_for(lambda: c.get(f"/v1/jobs/{job}").json()["state"] in ("failed", "succeeded"))
    assert main(["bench", "dock-1", "--iterations", "5", "--warmup", "1"]) == 0
    capsys.readouterr()

    out = tmp_path / "out" / "visit.html"
    out.parent.mkdir()
    assert main(["report", "--since", "1h", "-o", str(out), "--site", "Dock <North>"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}: 2 device(s), 1 unreachable")
    assert main(["report", "--since", "1h", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    return out, report, agent, files


def test_the_report_lists_what_was_done_and_what_failed_and_keeps_secrets(report_files):
    """One visit (it costs seconds to make), three checks: the actions, no secret, the device that is gone."""
    _actions_and_failures(report_files)
    _nothing_secret(report_files)
    _unreachable_listed_with_its_last_known_state(report_files)


def _actions_and_failures(report_files) -> None:
    out, report, agent, files = report_files
    html = out.read_text()
    dock = next(d for d in report["devices"] if d["name"] == "dock-1")
    assert dock["reachable"] and dock["agent_version"] and dock["reached"] == "HTTP; found by saved"
    assert dock["model"]["after"]["version"] == "v1"
    assert dock["model"]["after"]["sha256"] == sm.sha256(files["v1"])[:12]
    assert dock["model"]["before"]["label"] == "configured model" and dock["model"]["changed"]
    whats = [(a["what"], a["outcome"]) for a in dock["actions"]]
    assert ("push", "stored") in whats and ("activate", "good") in whats
    push = next(a for a in dock["actions"] if a["what"] == "push")
    assert push["target"] == f"v1 (sha256 {sm.sha256(files['v1'])[:12]})"
    assert ("camera source", "failed") in whats  # the camera that would not open, with why
    assert ("forwarding", "changed") in whats
    assert any("camera source" in f for f in report["failures"])
    assert [r["status"] for r in dock["benchmarks"]["results"]] and dock["benchmarks"]["results"][0]["p50_ms"]
    assert dock["camera"]["snapshot"].startswith("data:image/jpeg;base64,")
    # the same in the HTML, escaped
    for text in (
        "configured model -&gt; v1",
        "push",
        "camera source",
        "forwarding disabled",
        "Dock &lt;North&gt;",
    ):
        assert text in html, text
    assert html.count("<svg") >= 2 and 'src="data:image/jpeg;base64,' in html
    assert "<script" not in html and 'http-equiv="Content-Security-Policy"' in html


def _nothing_secret(report_files) -> None:
    out, report, agent, _ = report_files
    for text in (out.read_text(), json.dumps(report)):
        for secret in (agent.token, TRIO_KEY, TRIO_KEY[-4:], CAMERA_PASSWORD, "roof-token-should-not-leak"):
            assert secret not in text


def _unreachable_listed_with_its_last_known_state(report_files) -> None:
    out, report, _, _ = report_files
    roof = next(d for d in report["devices"] if d["name"] == "roof-cam")
    assert not roof["reachable"] and roof["last_seen"] == pytest.approx(LAST_SEEN)
    assert roof["last_known"] == {"version": "0.0.9", "model": "yard-v3", "backend": "onnxruntime"}
    html = out.read_text()
    assert "Not reachable when this report was written" in html and "yard-v3" in html
    assert time.strftime("%Y-%m-%d %H:%M", time.localtime(LAST_SEEN)) in html


def test_bad_input_is_one_line_and_writes_nothing(console, tmp_path, capsys):
    with pytest.raises(ReportError, match="90m, 2h, 1d"):
        parse_since("yesterday-ish")
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert main(["report", "-o", str(tmp_path / "x.html")]) == 2
    assert "no saved device" in capsys.readouterr().err
    ConsoleConfig(console).save_device(DeviceRecord(name="a", host="127.0.0.1", port=_closed_port()))
    assert main(["report", "-o", str(tmp_path / "nowhere" / "x.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
    ConsoleConfig(console).save_device(DeviceRecord(name="b", host="127.0.0.1", port=_closed_port()))
    assert main(["report"]) == 2
    assert "say where to write it: -o visit.html" in capsys.readouterr().err
    assert main(["report", "--devices", "b", "--json"]) == 0
    assert [d["name"] for d in json.loads(capsys.readouterr().out)["devices"]] == ["b"]
    assert main(["report", "--since", "soon", "--json"]) == 2
    assert capsys.readouterr().err.strip() == (
        "fieldtui: --since 'soon': write how long ago (90m, 2h, 1d) or a time (2026-12-01T09:30)"
    )


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_file_renders_offline_in_chromium_and_prints_to_a4(report_files, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Debian package chromium is not installed (apt-get install -y chromium)")
    out, _, _, _ = report_files
    shot, pdf = tmp_path / "visit.png", tmp_path / "visit.pdf"
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    # a request leaving the file would be blocked by the page's CSP and logged; one is planted to prove it
    probe = out.with_name("probe.html")
    probe.write_text(out.read_text().replace("</body>", '<img src="http://127.0.0.1:9/leak.png"></body>'))
    results = {}
    for name, page, extra in (
        ("shot", out, [f"--screenshot={shot}", "--window-size=1200,1600"]),
        ("pdf", out, [f"--print-to-pdf={pdf}", "--no-pdf-header-footer"]),
        ("probe", probe, [f"--screenshot={tmp_path / 'probe.png'}"]),
    ):
        run = subprocess.run([*common, *extra, page.as_uri()], capture_output=True, text=True, timeout=60)
        results[name] = run.stderr
    assert shot.stat().st_size > 20_000  # a real page with a photo, not a blank one
    body = pdf.read_bytes()
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", body)
    assert body.startswith(b"%PDF") and boxes, body[:200]
    for w, h in boxes:  # every page A4: 210 x 297 mm = 595 x 842 pt
        assert abs(float(w) - 595.3) < 1.5 and abs(float(h) - 841.9) < 1.5, boxes
    assert "Content Security Policy" in results["probe"], results["probe"][-2000:]
    assert ":CONSOLE" in results["probe"]  # console messages are in the log, so their absence below counts
    for name in ("shot", "pdf"):
        assert "Content Security Policy" not in results[name], results[name][-2000:]
        assert "net::ERR" not in results[name], results[name][-2000:]
        assert ":CONSOLE" not in results[name], results[name][-2000:]  # no console message at all
    shutil.copy(shot, out.with_name("visit.png"))  # kept beside the report for a person to look at


async def test_w_in_the_device_list_writes_the_report_and_says_where(inproc_agent, tmp_path):
    from textual.widgets import DataTable

    from fieldtui.fleet import Fleet
    from screens.app import FieldtuiApp
    from screens.devices import DevicesScreen
    from tests.tui_pilot import SIZE, until

    agent = inproc_agent(source="demo:?fps=20&size=160x120")
    config = ConsoleConfig(tmp_path / "console")
    port = int(agent.url.rsplit(":", 1)[1])
    config.save_device(DeviceRecord(name="dock-1", host="127.0.0.1", port=port), agent.token)
    config.save_device(
        DeviceRecord(name="roof-cam", host="127.0.0.1", port=_closed_port(), last_seen=LAST_SEEN)
    )
    unpaired = inproc_agent(source="demo:?fps=5&size=64x48")  # added without its token
    config.save_device(
        DeviceRecord(name="yard-2", host="127.0.0.1", port=int(unpaired.url.rsplit(":", 1)[1]))
    )
    app = FieldtuiApp(Fleet(config, mdns=False))
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot,
            "the rows",
            lambda: isinstance(app.screen, DevicesScreen) and app.screen.query_one(DataTable).row_count == 3,
        )
        app.screen.report_dir = tmp_path
        await pilot.press("w")
        await until(
            pilot,
            "the report",
            lambda: any(n.title == "Visit report written" for n in app._notifications),
        )
        note = next(n for n in app._notifications if n.title == "Visit report written")
    written = list(tmp_path.glob("visit-*.html"))
    assert len(written) == 1 and str(written[0]) in note.message
    assert "3 device(s), 2 unreachable" in note.message
    html = written[0].read_text()
    assert "dock-1" in html and "Not reachable when this report was written" in html
    assert "it answers, but no token is saved for it: pair it (`fieldtui pair 127.0.0.1`)" in html
    assert agent.token not in html and unpaired.token not in html


def test_what_failed_lists_failed_benchmarks_bad_health_and_a_dead_camera():
    ok = {"status": "ok", "reasons": []}
    device = {
        "name": "gate-3",
        "reachable": True,
        "actions": [
            {"what": "rebuild", "target": "tensorrt", "outcome": "failed", "reason": "no GPU", "failed": True}
        ],
        "benchmarks": {
            "results": [{"status": "failed", "config": "model tensorrt fp16 batch 1", "reason": "OOM"}]
        },
        "health": {"status": "degraded", "reasons": ["camera image is dark"]},
        "camera": {"up": False, "reason": "RTSP timeout"},
    }
    assert failures_of([device]) == [
        "gate-3: rebuild tensorrt: failed: no GPU",
        "gate-3: benchmark model tensorrt fp16 batch 1 failed: OOM",
        "gate-3: health degraded: camera image is dark",
        "gate-3: camera down: RTSP timeout",
    ]
    well = {**device, "actions": [], "benchmarks": {"results": []}, "health": ok, "camera": {"up": True}}
    assert failures_of([well]) == []


def test_every_value_is_escaped():
    from fieldtui.report_html import render

    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    report = {
        "site": evil,
        "since": 0.0,
        "generated": 1.0,
        "console_version": evil,
        "failures": [evil],
        "devices": [
            {
                "name": evil,
                "id": evil,
                "address": evil,
                "reached": evil,
                "last_seen": None,
                "reachable": False,
                "error": evil,
                "last_known": {"version": evil, "model": evil, "backend": evil},
            }
        ],
    }
    html = render(report)
    assert "<script" not in html and "<img src=x" not in html and "onerror=alert(2)>" not in html
    assert html.count("&lt;script&gt;") >= 8
