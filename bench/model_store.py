"""Model push over loopback: throughput against a plain socket sink, and the agent's memory while it receives.

    .venv/bin/python bench/model_store.py [--mb 200] [--rounds 3]

One real agent subprocess on 127.0.0.1 (a small generated detector, demo source at 5 fps). Each round:

1. *Socket sink*: the same bytes, read from the same file in the same 1 MB chunks, ``sendall`` to a
   thread that ``recv_into``\\ s and discards them: the most loopback can do for this sender.
2. *Agent PUT*: the console's own upload path (fieldtui/push.py ``file_chunks`` through
   ``AgentClient.upload_model``) into ``PUT /v1/models/{version}``: the agent streams the body to a
   staging file while hashing it, fsyncs it, compares the sha256, and only then looks at the content.
   The payload is random bytes with the right sha256, so it is refused at that first look (422, "not an
   ONNX model") without being loaded: what is measured is the upload phase of a real PUT - receiving,
   hashing, writing, fsync - and not the model load that would follow for a real model (which costs the
   model's size in memory by nature). "sent" is the time until the client handed over the last byte,
   "answered" until the 422 came back (fsync included).

For attribution, the same client also PUTs the bytes to a *null endpoint*: uvicorn and Starlette in a
process of their own, reading ``request.stream()`` and discarding it - what the HTTP server alone costs,
before the store hashes or writes anything.

While the agent receives, a thread reads its ``/proc/PID/status`` (VmRSS) every 5 ms: the peak growth
over its resident size just before the push; its CPU time (all threads, ``/proc/PID/stat``) is taken
before and after, less what its pipeline used in the second before the push (CPU ms/MB: agent, and
this process, the console side). Figures are printed, not asserted.
Targets: PUT MB/s >= 0.5 x the sink's; peak RSS growth <= 32 MB.

The sink only moves bytes between two sockets; a PUT must also hash them and get them onto the disk
before it answers. So each round also measures, on this machine and in the same run, what those two
steps alone allow, and the summary prints the agent against the slowest of the three as well (a
ceiling, not the target - the target row stays the issue's ratio to the sink):

* *sha256*: the same bytes through ``hashlib.sha256`` in 1 MB updates, one core.
* *disk*: the same bytes written in 1 MB blocks to a new file beside the agent's store (same
  filesystem), fsynced, then removed: the part of an answered PUT that no protocol change can save
  (the refused payload is removed before the 422, as a cut-off upload would be).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.convnet import make_conv_detector  # noqa: E402
from fieldtui.client import AgentClient  # noqa: E402
from fieldtui.demo import serve_command, stop_process, wait_ready  # noqa: E402
from fieldtui.errors import AgentClientError  # noqa: E402
from fieldtui.push import CHUNK, PushProgress, file_chunks  # noqa: E402

RATIO_TARGET = 0.5
RSS_TARGET_MB = 32.0


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/{pid}/status has no {field}")


class RssWatch:
    """Samples a process's VmRSS every 5 ms on a thread; ``peak_kb`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = status_kb(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def sink_seconds(path: Path) -> float:
    """Send ``path`` to a discard server on loopback as the push does (1 MB reads, sendall)."""
    server = socket.create_server(("127.0.0.1", 0))
    received = 0

    def drain() -> None:
        nonlocal received
        conn, _ = server.accept()
        buf = bytearray(CHUNK)
        with conn:
            while n := conn.recv_into(buf):
                received += n

    thread = threading.Thread(target=drain)
    thread.start()
    t0 = time.perf_counter()
    with socket.create_connection(server.getsockname()) as sock, path.open("rb") as f:
        while block := f.read(CHUNK):
            sock.sendall(block)
    thread.join()
    elapsed = time.perf_counter() - t0
    server.close()
    assert received == path.stat().st_size
    return elapsed


NULL_SERVER = """
import socket, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def put(request):
    async for _ in request.stream():
        pass
    return Response(status_code=204)

sock = socket.create_server(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(Starlette(routes=[Route("/x", put, methods=["PUT"])]), log_config=None, access_log=False)
uvicorn.Server(config).run(sockets=[sock])
"""


def sha256_seconds(path: Path) -> float:
    """One core hashing the same bytes (read from the page cache into one reused 1 MB buffer)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return time.perf_counter() - t0


def disk_seconds(path: Path, folder: Path) -> float:
    """Write the same bytes to a new file in ``folder`` in 1 MB blocks, fsync, remove it."""
    target = folder / "bench-disk.tmp"
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with path.open("rb", buffering=0) as src, target.open("wb", buffering=0) as dst:
        while n := src.readinto(buf):
            dst.write(view[:n])
        os.fsync(dst.fileno())
    target.unlink()
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (also those that have ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def console_seconds() -> float:
    """User + system CPU time of this process (the console side of the PUT, and the RSS watch)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def null_put_seconds(port: int, path: Path) -> float:
    import httpx

    size = path.stat().st_size
    async with httpx.AsyncClient(timeout=120) as http:
        t0 = time.perf_counter()
        response = await http.put(
            f"http://127.0.0.1:{port}/x",
            content=file_chunks(path, size),
            headers={"Content-Length": str(size)},
        )
        assert response.status_code == 204
        return time.perf_counter() - t0


async def put_round(client: AgentClient, path: Path, sha: str, version: str) -> tuple[float, float, str]:
    """(seconds until the last byte was handed over, seconds until the answer, the answer)."""
    size = path.stat().st_size
    sent_at = 0.0

    def progress(p: PushProgress) -> None:
        nonlocal sent_at
        if p.phase == "verifying":
            sent_at = time.perf_counter()

    t0 = time.perf_counter()
    try:
        await client.upload_model(version, file_chunks(path, size, progress), size=size, sha256=sha)
        answer = "stored (unexpected: the payload is not a model)"
    except AgentClientError as err:
        answer = f"HTTP {err.status}: {err.detail}"
    return sent_at - t0, time.perf_counter() - t0, answer


def ratio_passes(ratios: list[float]) -> bool:
    """The throughput target is judged on the median round, not the best: one lucky round on a noisy
    machine must not print PASS."""
    return statistics.median(ratios) >= RATIO_TARGET


async def main(mb: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="fieldtui-bench-store-"))
    payload = work / "payload.onnx"
    with payload.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()
    model = make_conv_detector(work / "small.onnx", imgsz=128, nc=4, width=8)
    home = work / "home"
    log = work / "agent.log"
    cmd = serve_command(home, "demo:?fps=5&size=160x120", mdns=False) + ["--model", str(model)]
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL, stderr=err)
    null = await asyncio.create_subprocess_exec(
        sys.executable, "-c", NULL_SERVER, stdout=asyncio.subprocess.PIPE
    )
    try:
        null_port = int((await null.stdout.readline()).decode())
        info, _ = await wait_ready(proc, home, log, 90)
        print(f"model push over loopback: {mb} MB of random bytes, {rounds} rounds, agent pid {proc.pid}")
        print(
            f"  {'round':<6}{'sink':>7}{'sha256':>8}{'disk':>7}{'null PUT':>9}{'PUT sent':>9}{'answered':>9}"
            f"{'ratio':>7}{'/ceiling':>9}{'CPU ms/MB':>10}{'RSS+ MB':>8}"
        )
        print(
            f"  {'':<6}{'(MB/s)':>7}{'(MB/s)':>8}{'(MB/s)':>7}{'(MB/s)':>9}{'(MB/s)':>9}{'(MB/s)':>9}"
            f"{'':>16}{'agent/cons.':>11}"
        )
        ratios, growths, null_ratios, ceiling_ratios = [], [], [], []
        rows: dict[str, list[float]] = {}
        async with AgentClient(info.api_url, info.token, timeout=120) as client:
            await asyncio.sleep(2.0)  # let the agent settle (first frames, allocator warm)
            for i in range(rounds):
                sink = mb / sink_seconds(payload)
                hashing = mb / sha256_seconds(payload)
                disk = mb / disk_seconds(payload, home)
                null_rate = mb / await null_put_seconds(null_port, payload)
                null_ratios.append(null_rate / sink)
                before = status_kb(proc.pid, "VmRSS")
                idle0 = cpu_seconds(proc.pid)
                await asyncio.sleep(1.0)  # what the agent's own pipeline uses meanwhile, per second
                cpu0, console0 = cpu_seconds(proc.pid), console_seconds()
                idle_rate = cpu0 - idle0
                with RssWatch(proc.pid) as watch:
                    sent_s, answered_s, answer = await put_round(client, payload, sha, f"bench{i}")
                cpu_ms = (cpu_seconds(proc.pid) - cpu0 - idle_rate * answered_s) * 1000 / mb
                console_ms = (console_seconds() - console0) * 1000 / mb
                growth = (watch.peak_kb - before) / 1024
                answered = mb / answered_s
                ratio = answered / sink
                ceiling = min(sink, hashing, disk)
                ratios.append(ratio)
                growths.append(growth)
                ceiling_ratios.append(answered / ceiling)
                for key, value in (
                    ("sink", sink),
                    ("sha256", hashing),
                    ("disk", disk),
                    ("null", null_rate),
                    ("sent", mb / sent_s),
                    ("answered", answered),
                    ("cpu", cpu_ms),
                    ("console", console_ms),
                ):
                    rows.setdefault(key, []).append(value)
                print(
                    f"  {i + 1:<6}{sink:>7.0f}{hashing:>8.0f}{disk:>7.0f}{null_rate:>9.0f}{mb / sent_s:>9.0f}"
                    f"{answered:>9.0f}{ratio:>7.2f}{answered / ceiling:>9.2f}{cpu_ms:>6.2f}/{console_ms:<4.2f}{growth:>7.1f}"
                )
        med = {key: statistics.median(values) for key, values in rows.items()}
        print(
            f"  {'median':<6}{med['sink']:>7.0f}{med['sha256']:>8.0f}{med['disk']:>7.0f}{med['null']:>9.0f}"
            f"{med['sent']:>9.0f}{med['answered']:>9.0f}{statistics.median(ratios):>7.2f}"
            f"{statistics.median(ceiling_ratios):>9.2f}{med['cpu']:>6.2f}/{med['console']:<4.2f}{statistics.median(growths):>7.1f}"
        )
        print(f"  agent answer: {answer}")
        print(f"  VmHWM of the agent after all rounds: {status_kb(proc.pid, 'VmHWM') / 1024:.0f} MB")
        median_ratio, worst_growth = statistics.median(ratios), max(growths)
        print(
            f"  TARGET  PUT/sink throughput ratio (answered, median of {rounds}): {median_ratio:.2f}   best "
            f"{max(ratios):.2f}   target >= {RATIO_TARGET}   {'PASS' if ratio_passes(ratios) else 'FAIL'}"
        )
        print(
            f"  TARGET  agent peak RSS growth during a push (worst round): {worst_growth:.1f} MB   target <= "
            f"{RSS_TARGET_MB:.0f} MB   {'PASS' if worst_growth <= RSS_TARGET_MB else 'FAIL'}"
        )
        print(
            f"  for reference, the null endpoint (uvicorn alone) / sink: best {max(null_ratios):.2f}   median "
            f"{statistics.median(null_ratios):.2f}"
        )
        limit = min(("sink", "sha256", "disk"), key=lambda k: med[k])
        print(
            f"  ceiling on this machine (not the target): min(sink, sha256 one core, disk write+fsync+remove) "
            f"= {limit} at {med[limit]:.0f} MB/s (median); the issue's 0.5 x sink would need "
            f"{RATIO_TARGET * med['sink']:.0f} MB/s"
        )
        print(
            f"  agent answered / ceiling, per round: median {statistics.median(ceiling_ratios):.2f}   "
            f"best {max(ceiling_ratios):.2f}"
        )
    finally:
        await stop_process(null)
        await stop_process(proc)
        for p in sorted(work.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        work.rmdir()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="payload size in MB (default 200)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.mb, args.rounds))
