"""`fieldtui-agent run` as a technician runs it: a real process, real signals, a real /metrics port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import pytest

from agent.frames.sources.demo import DemoScene
from fieldtui.protocol import PipelineStatus

SECRET = "hunter2"
LINE = re.compile(
    r"^fps \d+\.\d  p50 \d+\.\d ms  p95 \d+\.\d ms  conf (\d\.\d\d|-)  drops \d+\.\d%  camera (ok|CHECK|-)  det "
)
ROOT = Path(__file__).resolve().parents[1]


def agent(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_status_lines_and_metrics_while_running() -> None:
    port = free_port()
    proc = agent("run", "--source", "demo:?fps=30", "--duration", "4", "--metrics-port", str(port),
                 "--metrics-host", "127.0.0.1")  # fmt: skip
    try:
        text = ""
        deadline = time.monotonic() + 30
        while "fieldtui_agent_frames_total" not in text or "model_confidence_avg" not in text:
            assert time.monotonic() < deadline, "no metrics from the running agent"
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            time.sleep(0.2)
        for name in ("inference_latency_seconds_bucket", "detections_total", "frame_drop_rate",
                     "model_confidence_avg", "fieldtui_agent_stage_seconds", "fieldtui_agent_fps",
                     "fieldtui_agent_model_info", "fieldtui_agent_source_up", "fieldtui_agent_camera_ok"):  # fmt: skip
            assert name in text
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) >= 3
    assert all(LINE.match(line) for line in lines), lines
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_cleanly_on_a_signal(sig: signal.Signals) -> None:
    proc = agent("run", "--source", "demo:")
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the first status line: the loop is running
    assert LINE.match(first), first
    proc.send_signal(sig)
    code, _, err = finish(proc, timeout=30)
    assert code == 0, err
    assert "Traceback" not in err


def test_video_file_to_the_end_as_json(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    scene = DemoScene(320, 240, seed=5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    for i in range(40):
        writer.write(scene.render(i / 30)[0])
    writer.release()
    code, out, err = finish(agent("run", "--source", str(path), "--fast", "--json"))
    assert code == 0, err
    statuses = [PipelineStatus.model_validate_json(line) for line in out.strip().splitlines()]
    last = statuses[-1]
    assert last.state == "stopped" and last.source.reason == "end of file"
    assert last.sample.frames_total == 40 and last.sample.dropped_total == 0


def test_unreachable_stream_is_one_clear_line_without_the_password() -> None:
    uri = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/stream1?token=t0ps3cret"
    code, out, err = finish(agent("run", "--source", uri))
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("fieldtui-agent: could not open rtsp://***@127.0.0.1:")
    assert "check the address and that the camera is on the network" in lines[0]
    assert SECRET not in err and "t0ps3cret" not in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--source", "ftp://camera/feed"], "unknown source scheme 'ftp'"),
        (["--source", "/nonexistent/clip.mp4"], "no such file or folder: /nonexistent/clip.mp4"),
        (["--model", "/nonexistent/model.onnx"], "model file not found"),
    ],
)
def test_bad_input_is_one_line(args: list[str], expected: str) -> None:
    code, out, err = finish(agent("run", *args, "--duration", "1"))
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


def test_metrics_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = finish(agent("run", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                                      "--duration", "1"))  # fmt: skip
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"cannot serve metrics on 127.0.0.1:{port}" in lines[0], lines


def test_status_line_says_why_frames_stopped_and_what_the_camera_shows() -> None:
    from agent.cli.headless import format_status
    from fieldtui.protocol import CameraHealth, Sample, SourceStatus, StageTimes

    reasons = ["image very dark (brightness 12): lens covered or lights off?"]
    sample = Sample(
        ts=0.0, fps=0.0, latency_p50_ms=12.14, latency_p95_ms=15.0, stages_ms=StageTimes(), confidence_avg=None,
        detections={"square": 1, "circle": 3}, drop_rate=0.003,
        camera=CameraHealth(brightness=12.0, sharpness=3.0, ok=False, reasons=reasons),
    )  # fmt: skip
    stalled = "no frame for 5 s from rtsp://***@cam/live: stream stalled"
    status = PipelineStatus(
        state="reconnecting",
        source=SourceStatus(uri="rtsp://***@cam/live", kind="rtsp", up=False, reason=stalled),
        sample=sample,
    )
    # No frames arrive: the last camera health (a dark picture) is stale, so it is not shown as current.
    assert format_status(status) == (
        "fps 0.0  p50 12.1 ms  p95 15.0 ms  conf -  drops 0.3%  camera no frames  det circle:3 square:1"
        f"  [reconnecting: {stalled}]"
    )
    live = status.model_copy(
        update={"state": "running", "source": status.source.model_copy(update={"up": True})}
    )
    live.sample.fps = 29.8
    assert format_status(live) == (
        "fps 29.8  p50 12.1 ms  p95 15.0 ms  conf -  drops 0.3%  camera CHECK  det circle:3 square:1"
        f"  camera: {reasons[0]}"
    )


def test_status_line_says_no_frames_not_camera_ok_during_an_outage() -> None:
    """An outage with a last healthy frame printed "camera ok" while fps was 0 and it reconnected."""
    from agent.cli.headless import format_status
    from fieldtui.protocol import CameraHealth, Sample, SourceStatus, StageTimes

    healthy = CameraHealth(brightness=120.0, sharpness=300.0, ok=True, reasons=[])
    sample = Sample(ts=0.0, fps=0.0, latency_p50_ms=0.0, latency_p95_ms=0.0, stages_ms=StageTimes(),
                    confidence_avg=None, detections={}, drop_rate=0.0, camera=healthy)  # fmt: skip
    source = SourceStatus(
        uri="rtsp://cam/live", kind="rtsp", up=False, reason="could not open rtsp://cam/live"
    )
    for state in ("reconnecting", "running"):
        line = format_status(PipelineStatus(state=state, source=source, sample=sample))
        assert "camera no frames" in line and "camera ok" not in line, line
    up = SourceStatus(uri="rtsp://cam/live", kind="rtsp", up=True)
    sample.fps = 25.0
    assert "camera ok" in format_status(PipelineStatus(state="running", source=up, sample=sample))
