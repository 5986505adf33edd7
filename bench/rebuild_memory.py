"""The serving agent's memory around an INT8 engine rebuild: RSS before, at its peak during, and after
(prints figures; never asserts).

    .venv/bin/python bench/rebuild_memory.py                 # 300 calibration frames
    .venv/bin/python bench/rebuild_memory.py --frames 577

A real ``fieldtui-agent serve`` (demo model, demo source) on 127.0.0.1; a folder of demo-scene JPEGs as
``calibration_dir``; ``POST /v1/engines/rebuild`` INT8; the agent's VmRSS read from /proc every 0.1 s
until the job ends, then 5 s later (the level it settles at); and the peak RSS of its child processes
(agent/engines/worker.py runs the build in one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_rss_mb(pid: int) -> float:
    """RSS of ``pid``'s child processes (the engine build runs in one)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            with contextlib.suppress(OSError, ValueError):
                total += rss_mb(int(kid))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="calibration frames (default 300)")
    args = parser.parse_args()

    import cv2

    from agent.bench.frames import scene_frames

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        frames = tmpdir / "frames"
        frames.mkdir()
        for i, image in enumerate(scene_frames(args.frames + 32)):
            cv2.imwrite(str(frames / f"{i:05d}.jpg"), image)
        home = tmpdir / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_AGENT_")}
        cmd = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
        cmd += ["--port", "0", "--no-mdns", "--source", "demo:"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            runtime = home / "agent.json"
            deadline = time.monotonic() + 90
            while not runtime.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            info = json.loads(runtime.read_text())
            token = (home / "token").read_text().strip()
            client = httpx.Client(
                base_url=info["api_url"], headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            time.sleep(5)  # serving, warmed up
            before = rss_mb(proc.pid)
            peak = [before]
            child_peak = [0.0]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.1):
                    peak.append(rss_mb(proc.pid))
                    child_peak.append(children_rss_mb(proc.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.monotonic()
            job = client.post(
                "/v1/engines/rebuild",
                json={
                    "precision": "int8",
                    "calibration_frames": args.frames,
                    "calibration_dir": str(frames),
                    "accuracy_frames": 32,
                },
            ).json()
            while (state := client.get(f"/v1/jobs/{job['id']}").json())["state"] in ("queued", "running"):
                time.sleep(0.3)
            took = time.monotonic() - t0
            time.sleep(5)
            stop.set()
            sampler.join()
            after = rss_mb(proc.pid)
            print(f"INT8 rebuild, {args.frames} calibration frames: job {state['state']} in {took:.1f} s")
            if state["state"] != "succeeded":
                print(f"  error: {state.get('error')}")
            print(
                f"  agent RSS before {before:.0f} MB, peak during {max(peak):.0f} MB, 5 s after {after:.0f} MB"
            )
            print(f"  after / before = {after / before:.2f}")
            print(f"  its child processes (the build) at their peak: {max(child_peak):.0f} MB")
        finally:
            proc.terminate()
            proc.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
