"""Console speed, printed (no asserts): a busy dashboard and the start-up to the device list.

Each measurement runs the real app in a child process on a pseudo-terminal (120x40, 24-bit colour)
that this process drains, so terminal output is produced and written as in a real terminal.

1. Dashboard fed 20 samples/s for 60 s through the same path as a live agent (a fake agent's event
   stream -> the ``follow`` worker -> Telemetry + coalescing ``SampleArrived``), with the camera view
   refreshing once a second. Printed: age of the sample on screen at the end (goal: at most 1 s),
   console CPU time / wall time (goal: under 25% of a core), RSS growth after warm-up (goal: under 20 MB).
2. Start-up: from spawning ``python`` to the device list's rows reaching the terminal (three saved
   devices; goal: under 1.5 s).

    .venv/bin/python bench/tui.py [--seconds 60] [--rate 20] [--startup-only]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COLS, ROWS = 120, 40
WARMUP_S = 3.0


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# --- children (run inside the pseudo-terminal) ---------------------------------------------------


def child_dashboard(out: Path, seconds: float, rate: float) -> None:
    from fieldtui.protocol import DeviceRecord
    from screens.app import FieldtuiApp
    from screens.dashboard import DashboardScreen
    from tests.tui_fakes import FakeAgent, FakeFleet, picture_png, pipeline_status, sample

    async def feed():
        loop = asyncio.get_running_loop()
        next_at, i = loop.time(), 0
        while True:
            yield "sample", sample(i, time.time())
            i += 1
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    record = DeviceRecord(name="bench-cam", host="10.0.4.17")
    agent = FakeAgent(status=pipeline_status(), feed=feed, picture=picture_png())
    app = FieldtuiApp(FakeFleet([(record, agent)]), open_device=record)
    marks: dict[str, float] = {}
    ages: list[float] = []

    def warm() -> None:
        marks.update(cpu0=cpu_seconds(), wall0=time.monotonic(), rss0=rss_bytes())
        app.set_interval(1.0, sample_age)

    def sample_age() -> None:
        screen = app.screen
        if isinstance(screen, DashboardScreen) and screen.rendered_ts is not None:
            ages.append(time.time() - screen.rendered_ts)

    def finish() -> None:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        now = time.time()
        result = {
            "cpu_s": cpu_seconds() - marks["cpu0"],
            "wall_s": time.monotonic() - marks["wall0"],
            "rss0": marks["rss0"],
            "rss1": rss_bytes(),
            "age_end_s": now - (screen.rendered_ts or 0.0),
            "lag_end_s": (screen.telemetry.latest.ts if screen.telemetry.latest else now)
            - (screen.rendered_ts or 0),
            "age_max_s": max(ages, default=float("nan")),
            "samples": screen.telemetry.count,
            "renders": screen.renders,
            "pictures": int(screen.query_one("#camera").picture is not None),
        }
        out.write_text(json.dumps(result))
        app.exit()

    app.call_later(lambda: app.set_timer(WARMUP_S, warm))
    app.call_later(lambda: app.set_timer(WARMUP_S + seconds, finish))
    app.run()


def child_startup() -> None:
    from fieldtui.fleet import Fleet
    from screens.app import FieldtuiApp

    FieldtuiApp(Fleet()).run()


def child_floor() -> None:
    """For scale: a bare Textual app showing the same three names in a table, on the same machine."""
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable, Footer, Header

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Header()
            yield DataTable()
            yield Footer()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns("NAME", "ADDRESS")
            for i in range(3):
                table.add_row(f"cam-{i}", f"10.255.0.1{i}:8470")

    Bare().run()


# --- the parent: a pseudo-terminal, drained ---------------------------------------------------------


def run_child(
    args: list[str], env: dict[str, str], timeout: float, marker: bytes | None = None
) -> tuple[float, int, float | None]:
    """Run this script as a child on a fresh pty, draining what it writes.

    Returns (spawn time, bytes written, when ``marker`` first reached the terminal). With a marker the
    child is sent ctrl+q as soon as it has appeared.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    written = [0]
    seen: list[float] = []
    tail = b""

    def drain() -> None:
        nonlocal tail
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            written[0] += len(data)
            if marker is not None and not seen:
                tail = (tail + data)[-(len(data) + len(marker)) :]
                if marker in tail:
                    seen.append(time.time())
                    os.write(master, b"\x11")  # ctrl+q: quit

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    spawned = time.time()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    os.close(slave)
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        reader.join(2)
    return spawned, written[0], seen[0] if seen else None


def dashboard(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    out = tmp / "dashboard.json"
    print(
        f"dashboard: {args.rate:g} samples/s for {args.seconds:g} s on a {COLS}x{ROWS} pty ...",
        flush=True,
    )
    _, written, _ = run_child(
        ["dashboard", str(out), str(args.seconds), str(args.rate)], env, args.seconds + 60
    )
    r = json.loads(out.read_text())
    cpu = r["cpu_s"] / r["wall_s"]
    growth = (r["rss1"] - r["rss0"]) / 2**20
    print(f"  samples received     {r['samples']} ({r['samples'] / (args.seconds + WARMUP_S):.1f}/s)")
    print(
        f"  renders              {r['renders']} ({r['renders'] / (args.seconds + WARMUP_S):.1f}/s, coalesced)"
    )
    print(f"  terminal output      {written / (args.seconds + WARMUP_S) / 1024:.0f} KiB/s")
    print(
        f"  sample on screen     {r['age_end_s'] * 1000:.0f} ms old at the end, {r['lag_end_s'] * 1000:.0f} ms"
        f" behind the newest; worst once-a-second check {r['age_max_s'] * 1000:.0f} ms  (goal <= 1000 ms)"
    )
    print(f"  console CPU          {cpu * 100:.1f}% of a core  (goal < 25%)")
    print(
        f"  RSS                  {r['rss0'] / 2**20:.1f} -> {r['rss1'] / 2**20:.1f} MiB, "
        f"growth {growth:+.1f} MiB  (goal < 20 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="samples per second")
    parser.add_argument("--startup-only", action="store_true", help="only the start-up measurement")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind = args.child[0]
        if kind == "dashboard":
            child_dashboard(Path(args.child[1]), float(args.child[2]), float(args.child[3]))
        elif kind == "floor":
            child_floor()
        else:
            child_startup()
        return

    with tempfile.TemporaryDirectory(prefix="fieldtui-bench-tui-") as tmp:
        env = {
            **os.environ,
            "TERM": "xterm-256color",
            "COLORTERM": "truecolor",
            "PYTHONPATH": str(REPO),
            "FIELDTUI_CONFIG_DIR": str(Path(tmp) / "console"),
        }
        if not args.startup_only:
            dashboard(args, env, Path(tmp))

        from fieldtui.config import ConsoleConfig
        from fieldtui.protocol import DeviceRecord

        config = ConsoleConfig(Path(tmp) / "console")
        for i, host in enumerate(("10.255.0.10", "10.255.0.11", "10.255.0.12")):
            config.save_device(DeviceRecord(name=f"cam-{i}", host=host, origin=["manual"]), "token")
        for kind, label in (
            ("startup", "fieldtui, 3 saved devices, mDNS on"),
            ("floor", "bare Textual table"),
        ):
            times = []
            for _ in range(3):
                spawned, _, seen = run_child([kind], env, 60, marker=b"cam-2")
                times.append(seen - spawned if seen else float("nan"))
            print(
                f"start-up to the device list on the terminal ({label}): "
                f"{', '.join(f'{t:.2f}' for t in times)} s; best {min(times):.2f} s"
                + (
                    "  (goal < 1.5 s)"
                    if kind == "startup"
                    else "  (for scale: the floor on this machine now)"
                )
            )
        print(
            f"load average while measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
