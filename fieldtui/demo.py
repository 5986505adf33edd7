"""``fieldtui demo``: a real agent on this laptop, paired and watched, with no hardware.

:func:`start_demo_agent` starts ``python -m agent serve`` as a subprocess (the console never imports the
agent) on 127.0.0.1 with the synthetic ``demo:`` camera, optionally with faults injected, advertised over
mDNS on loopback; waits until it answers; reads its token the way pairing over SSH does
(``fieldtui-agent token --json``); saves it as a device; and stops it cleanly (SIGTERM, wait) on exit.
The TUI reuses it; :func:`run_demo` is the text version: one status line a second from the live samples.

``--cameras N`` runs N synthetic cameras on the one demo model (``[[cameras]]`` in the demo home's
config.toml, written by :func:`cameras_config`): ``cam1`` ... ``camN``, each its own scene (its own seed),
the last with camera faults on a schedule, so a multi-camera dashboard has one camera going bad.

One demo agent per home: the demo that starts it holds a lock on ``HOME/.demo.lock``; a second
``fieldtui demo`` finds the lock taken, attaches to the running agent (its own pid and port, read from
the agent's runtime file) and says so, and leaves it running when it ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from fieldtui.client import AgentClient
from fieldtui.config import ConsoleConfig, parse_host
from fieldtui.errors import AgentClientError, ConsoleError
from fieldtui.protocol import DEFAULT_PORT, DeviceInfo, DeviceRecord, Sample, TokenInfo

DEMO_FAULTS = "blur@20,dark@40,freeze@60,cover@80"
MAX_DEMO_CAMERAS = 8
DEMO_NAME = "fieldtui-demo"  # not the laptop's hostname: the demo must not pass for a real device
READY_TIMEOUT = 90.0  # first start makes a certificate and loads onnxruntime: slow on a small board
STOP_TIMEOUT = 10.0


class DemoError(ConsoleError):
    """The demo agent did not start or answer; the message carries the tail of its log."""


@dataclass
class DemoAgent:
    device: DeviceRecord  # as saved in the console config
    client: AgentClient  # open, authenticated, pinned when TLS is on
    home: Path
    pid: int | None  # the agent's process (None: an attached agent whose runtime file says nothing)
    attached: bool = False  # started by another `fieldtui demo`: this one neither started nor stops it


class DemoLock:
    """An exclusive ``flock`` on ``HOME/.demo.lock`` held by the demo that runs the agent of that home."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def running_pid(home: Path) -> int | None:
    """The pid in the agent's runtime file (``agent.json``), when one is serving from ``home``."""
    import json

    try:
        pid = json.loads((home / "agent.json").read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


def default_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fieldtui" / "demo-agent"


def demo_source(faults: bool, fps: float | None = None) -> str:
    query = [f"faults={DEMO_FAULTS}"] if faults else []
    if fps is not None:
        query.append(f"fps={fps:g}")
    return "demo:" + ("?" + "&".join(query) if query else "")


def cameras_config(cameras: int, faults: bool, fps: float | None = None) -> str:
    """The demo home's config.toml for ``cameras`` synthetic cameras: each its own scene (seed), the
    last one with faults on the schedule :data:`DEMO_FAULTS` (every one with ``faults``)."""
    if not 2 <= cameras <= MAX_DEMO_CAMERAS:
        raise DemoError(
            f"--cameras {cameras}: the demo runs 2 to {MAX_DEMO_CAMERAS} cameras (1 is the default)"
        )
    tables = []
    for i in range(1, cameras + 1):
        query = [f"seed={i}"]
        if faults or i == cameras:
            query.append(f"faults={DEMO_FAULTS}")
        if fps is not None:
            query.append(f"fps={fps:g}")
        tables.append(f'[[cameras]]\nname = "cam{i}"\nsource = "demo:?{"&".join(query)}"\n')
    return "# written by `fieldtui demo --cameras`: the demo's synthetic cameras\n\n" + "\n".join(tables)


def serve_command(
    home: Path, source: str | None, *, port: int = 0, tls: bool = False, mdns: bool = True
) -> list[str]:
    """The agent's command line; ``source`` None: the cameras of the home's config.toml."""
    cmd = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--name", DEMO_NAME]
    if source is not None:
        cmd += ["--source", source]
    if mdns:
        cmd += ["--mdns-interface", "127.0.0.1"]
    else:
        cmd += ["--no-mdns"]
    if tls:
        cmd += ["--tls"]
    return cmd


async def read_token(home: Path) -> TokenInfo:
    """What pairing over SSH reads, run locally: ``python -m agent token --json --home HOME``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "token",
        "--json",
        "--home",
        str(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        line = err.decode(errors="replace").strip().splitlines()
        raise DemoError(f"`fieldtui-agent token` failed: {line[-1] if line else f'exit {proc.returncode}'}")
    try:
        return TokenInfo.model_validate_json(out)
    except ValidationError as exc:
        raise DemoError(f"`fieldtui-agent token --json` printed something unexpected: {exc}") from None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


async def wait_ready(
    proc: asyncio.subprocess.Process, home: Path, log: Path, timeout: float
) -> tuple[TokenInfo, DeviceInfo]:
    """Poll until the agent from ``home`` answers on the URL its token file names."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise DemoError(f"the demo agent exited with status {proc.returncode}: {_tail(log)}")
        if running_pid(home) != proc.pid:  # not listening yet: no `token` process spent on asking
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.1)
            continue
        try:
            info = await read_token(home)
            async with AgentClient(info.api_url, info.token, info.tls_fingerprint, timeout=2.0) as client:
                device = await client.device()
            if device.id == info.device_id:  # our agent, not another one on a reused port
                return info, device
            last = f"{info.api_url} is another device ({device.id})"
        except (DemoError, AgentClientError) as err:
            last = str(err)
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.3)
    raise DemoError(f"the demo agent did not answer within {timeout:g} s ({last}); its log: {_tail(log)}")


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, wait; SIGKILL only if the agent ignores it. Returns the exit status."""
    if proc.returncode is None:
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            with suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode if proc.returncode is not None else -1


@asynccontextmanager
async def start_demo_agent(
    faults: bool = False,
    *,
    home: Path | None = None,
    config: ConsoleConfig | None = None,
    tls: bool = False,
    mdns: bool = True,
    fps: float | None = None,
    ready_timeout: float = READY_TIMEOUT,
    cameras: int = 1,
) -> AsyncIterator[DemoAgent]:
    """Run a local demo agent for the duration of the ``async with`` block; see the module docstring."""
    config_text = cameras_config(cameras, faults, fps) if cameras != 1 else None  # checked before starting
    home = (home or default_home()).expanduser().absolute()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = DemoLock(home / ".demo.lock")
    if not lock.acquire():  # another `fieldtui demo` runs this home's agent: use it, leave it running
        info, device = await wait_attached(home, ready_timeout)
        saved = (config or ConsoleConfig()).save_device(_record(info, device), info.token)
        async with AgentClient.for_device(saved.device, info.token) as client:
            yield DemoAgent(
                device=saved.device, client=client, home=home, pid=running_pid(home), attached=True
            )
        return
    try:
        async with _started(home, faults, config, tls, mdns, fps, ready_timeout, config_text) as demo:
            yield demo
    finally:
        lock.release()


def _record(info: TokenInfo, device: DeviceInfo) -> DeviceRecord:
    host, port, https = parse_host(info.api_url)
    return DeviceRecord(
        id=info.device_id,
        name=device.name,  # the running agent's (`token` reports the config's, not --name)
        host=host,
        port=port or DEFAULT_PORT,
        addresses=[host],
        tls=bool(https),
        tls_fingerprint=info.tls_fingerprint,
        origin=["manual"],
        last_seen=time.time(),
    )


async def wait_attached(home: Path, timeout: float) -> tuple[TokenInfo, DeviceInfo]:
    """The running demo agent of ``home`` (the other demo may still be starting it)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if running_pid(home) is not None:
            try:
                info = await read_token(home)
                async with AgentClient(info.api_url, info.token, info.tls_fingerprint, timeout=2.0) as c:
                    device = await c.device()
                if device.id == info.device_id:
                    return info, device
                last = f"{info.api_url} is another device ({device.id})"
            except (DemoError, AgentClientError) as err:
                last = str(err)
        await asyncio.sleep(0.3)
    raise DemoError(
        f"another `fieldtui demo` holds {home}, but its agent did not answer within {timeout:g} s ({last}); "
        "stop that demo, or give this one its own home"
    )


@asynccontextmanager
async def _started(
    home: Path,
    faults: bool,
    config: ConsoleConfig | None,
    tls: bool,
    mdns: bool,
    fps: float | None,
    ready_timeout: float,
    config_text: str | None = None,
) -> AsyncIterator[DemoAgent]:
    log_path = home / "demo-serve.log"
    if config_text is not None:  # several cameras: [[cameras]] in the demo home's own config.toml
        (home / "config.toml").write_text(config_text)
        cmd = serve_command(home, None, tls=tls, mdns=mdns)
    else:  # --source wins over any cameras an earlier `--cameras` demo left in the home
        cmd = serve_command(home, demo_source(faults, fps), tls=tls, mdns=mdns)
    with open(log_path, "wb") as log_file:  # this run only: its tail explains a failed start
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # Ctrl-C reaches the console only, which then stops the agent in order
        )
    try:
        info, device = await wait_ready(proc, home, log_path, ready_timeout)
        saved = (config or ConsoleConfig()).save_device(_record(info, device), info.token)
        async with AgentClient.for_device(saved.device, info.token) as client:
            yield DemoAgent(device=saved.device, client=client, home=home, pid=proc.pid)
    finally:
        await stop_process(proc)


def demo_banner(demo: DemoAgent) -> str:
    """What the demo says about its agent: where it runs, and who stops it."""
    where = f"{demo.device.name} at {demo.device.api_url} (pid {demo.pid or '?'}, home {demo.home})"
    if demo.attached:
        return (
            f"another `fieldtui demo` is already running its agent from {demo.home}: attached to it, "
            f"{where}; it keeps running when this one ends and stops with that demo."
        )
    return (
        f"demo agent {where}; saved as a device: `fieldtui status {demo.device.name}` works from another "
        "terminal. Ctrl-C stops it."
    )


# --- the text demo ----------------------------------------------------------------------------------


def format_sample(sample: Sample | None) -> str:
    """One status line: FPS, latency p50/p95, confidence, drops, camera."""
    if sample is None:
        return f"{time.strftime('%H:%M:%S')}  waiting for the first sample"
    conf = f"{sample.confidence_avg:.2f}" if sample.confidence_avg is not None else "  - "
    camera = "camera ?"
    if sample.camera is not None:
        camera = (
            "camera ok" if sample.camera.ok else "camera: " + "; ".join(sample.camera.reasons or ["not ok"])
        )
    return (
        f"{time.strftime('%H:%M:%S', time.localtime(sample.ts))}  {sample.fps:5.1f} fps  "
        f"p50 {sample.latency_p50_ms:6.1f} ms  p95 {sample.latency_p95_ms:6.1f} ms  conf {conf}  "
        f"drops {sample.drop_rate * 100:4.1f}%  {camera}"
    )


async def watch(
    client: AgentClient,
    out: TextIO,
    *,
    interval: float = 1.0,
    lines: int | None = None,
    cameras: bool = False,
) -> None:
    """Print one status line per ``interval`` from the SSE samples (until cancelled, or ``lines`` lines);
    ``cameras``: one line per camera and interval, each starting with the camera's name."""
    latest: dict[str, Sample | None] = {"sample": None}
    each: dict[str, Sample] = {}
    link: dict[str, str | None] = {"problem": None}

    def on_state(state: str, reason: str | None) -> None:
        link["problem"] = f"{state}: {reason}" if state == "reconnecting" else None

    async def read() -> None:
        async with client.events(on_state=on_state) as events:
            async for event, model in events:
                if event == "sample" and isinstance(model, Sample):
                    latest["sample"] = model
                elif event == "camera" and isinstance(model, Sample) and model.camera_name:
                    each[model.camera_name] = model

    reader = asyncio.create_task(read())
    printed = 0
    try:
        while lines is None or printed < lines:
            await asyncio.sleep(interval)
            if reader.done():
                reader.result()  # raises the reason the stream gave up
            problem = link["problem"]
            if problem:
                text = f"{time.strftime('%H:%M:%S')}  {problem}"
            elif cameras and each:
                width = max(map(len, each))
                text = "\n".join(f"{name:<{width}}  {format_sample(each[name])}" for name in sorted(each))
            else:
                text = format_sample(latest["sample"])
            out.write(text + "\n")
            out.flush()
            printed += 1
    finally:
        reader.cancel()
        with suppress(asyncio.CancelledError):
            await reader


async def run_demo(
    faults: bool = False,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    lines: int | None = None,
    home: Path | None = None,
    cameras: int = 1,
) -> None:
    """The body of ``fieldtui demo``: start, pair, watch until Ctrl-C (or ``lines`` lines), stop."""
    err.write(f"starting the demo agent (model, {cameras} camera{'s' if cameras > 1 else ''}, API)...\n")
    ended: str | None = None
    try:
        async with start_demo_agent(faults, home=home, cameras=cameras) as demo:
            ended = (
                "left the demo agent running for the other demo" if demo.attached else "demo agent stopped"
            )
            err.write(demo_banner(demo) + "\n")
            await _watch_demo(demo, faults, out, err, lines, cameras)
    finally:
        if ended is not None:  # after the agent stopped (or was left running), Ctrl-C included
            err.write(ended + "\n")
            err.flush()


async def _watch_demo(
    demo: DemoAgent, faults: bool, out: TextIO, err: TextIO, lines: int | None, cameras: int = 1
) -> None:
    if cameras > 1:
        which = "every camera" if faults else f"cam{cameras}"
        err.write(
            f"{cameras} cameras; faults on {which} at {DEMO_FAULTS} (seconds): watch its camera column.\n"
        )
    elif faults:
        err.write(f"camera faults at {DEMO_FAULTS} (seconds): watch the camera column.\n")
    err.flush()
    await watch(demo.client, out, lines=lines, cameras=cameras > 1)
