"""kill -9 at random points of push, activate and probation; after each restart the agent must serve a
complete, verified model with nothing left in staging and an intact state.db (prints figures; never
asserts).

    .venv/bin/python bench/crash_loop.py             # 20 kill points
    .venv/bin/python bench/crash_loop.py --points 50 --seed 3

One agent home; each round starts ``fieldtui-agent serve`` (demo model file as the store's versions,
demo source), waits for it to answer, then pushes version ``vN`` and activates it (a 2 s probation),
and sends SIGKILL at a random moment in the first few seconds of that. The next round's start is the
check: the serving version's file hashes to its manifest's sha256, ``models/.staging`` is empty, and
``PRAGMA integrity_check`` says ok.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import httpx  # noqa: E402

MODEL = ROOT / "agent" / "assets" / "demo.onnx"


def start(home: Path) -> tuple[subprocess.Popen, httpx.Client]:
    runtime = home / "agent.json"
    runtime.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTUI_AGENT_")}
    cmd = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
    cmd += ["--port", "0", "--no-mdns", "--source", "demo:?fps=15&size=320x240"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            info = json.loads(runtime.read_text())
            if info.get("pid") == proc.pid:
                break
        except (FileNotFoundError, ValueError):
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited with {proc.returncode} at start")
        time.sleep(0.05)
    token = (home / "token").read_text().strip()
    client = httpx.Client(base_url=info["api_url"], headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return proc, client


def verify(home: Path, client: httpx.Client) -> tuple[bool, str]:
    listing = client.get("/v1/models").json()
    serving = (listing.get("serving") or {}).get("version")
    staging = home / "models" / ".staging"
    left = [p.name for p in staging.iterdir()] if staging.is_dir() else []
    with sqlite3.connect(f"file:{home / 'state.db'}?mode=ro", uri=True) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    problems = []
    if serving is not None:
        manifest = json.loads((home / "models" / serving / "manifest.json").read_text())
        data = (home / "models" / serving / manifest["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            problems.append(f"{serving}'s file does not match its manifest")
    if left:
        problems.append(f"staging holds {left}")
    if integrity != "ok":
        problems.append(f"state.db: {integrity}")
    return not problems, f"serving {serving or 'the configured model'}" + (
        f"; {'; '.join(problems)}" if problems else ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    data = MODEL.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    survived = 0
    last = {"delay": 0.0, "stage": ""}  # where the previous round's kill landed
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        (home / "config.toml").write_text("[models]\nprobation_s = 2.0\nprobation_min_frames = 3\nkeep = 4\n")
        for n in range(args.points + 1):
            proc, client = start(home)
            try:
                if n > 0:
                    ok, said = verify(home, client)
                    survived += ok
                    print(
                        f"kill {n:>3} at {last['delay']:4.2f} s ({last['stage']}): {'ok ' if ok else 'BAD'} {said}"
                    )
                if n == args.points:
                    break
                last["delay"] = delay = rng.uniform(0.0, 4.0)
                last["stage"] = "push"
                killer = threading.Timer(delay, os.kill, (proc.pid, signal.SIGKILL))
                killer.start()
                try:
                    version = f"v{n}"
                    client.put(f"/v1/models/{version}", content=data, headers={"X-Model-Sha256": sha})
                    last["stage"] = "activate"
                    job = client.post(f"/v1/models/{version}/activate").json()["id"]
                    while client.get(f"/v1/jobs/{job}").json()["state"] in ("queued", "running"):
                        time.sleep(0.05)
                    last["stage"] = "probation"
                    time.sleep(5.0)
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                killer.join()
                proc.wait(10)
            finally:
                client.close()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    print(
        f"{survived} of {args.points} kill -9 points survived (a verified model serving, staging empty, state.db ok)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
