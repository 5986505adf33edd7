"""A staged rollout to six devices against the same six done one at a time, and the console's CPU.

    .venv/bin/python bench/rollout.py [--devices 6] [--probation 3] [--fps 5]

Six real agent subprocesses on 127.0.0.1 (demo source at ``--fps``, a ``--probation`` second window;
``confidence_ratio = 0`` and ``latency_factor = 1000`` in their ``[models]`` table, so two random-weight
models are never judged on their confidence, nor six health checks at once on a small shared machine on
their speed - what is measured is time, not a verdict). The model is a small generated conv
detector (bench/convnet.py, 160x160), a new seed (new bytes) for each phase:

1. *one at a time*: a one-device rollout (fieldtui/rollout, the real runner, HTTP) to each device in
   turn: push, activate, wait for the probation verdict. The sum of the six is what a technician doing
   it by hand with ``fieldtui push --activate`` and waiting on each would spend at best.
2. *staged*: one rollout to all six, ``--canary 1`` then the rest (waves 1 + 5).

Printed: the staged rollout's wall time ÷ the sum of phase 1 (two waves of probation against six: about
1/3 when the devices work in parallel), and this process's CPU time (user + system, all threads) during
the staged rollout: the console's cost of driving six devices. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.convnet import make_conv_detector  # noqa: E402
from fieldtui.config import ConsoleConfig  # noqa: E402
from fieldtui.demo import read_token, serve_command, stop_process, wait_ready  # noqa: E402
from fieldtui.protocol import DeviceRecord  # noqa: E402
from fieldtui.push import hash_file  # noqa: E402
from fieldtui.rollout import RolloutPlan, RolloutRunner, RolloutState, RolloutStore, wave_sizes  # noqa: E402


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def rollout(
    keys: list[str], model: Path, version: str, config: ConsoleConfig, store: RolloutStore, canary: int
) -> RolloutState:
    plan = RolloutPlan(
        id=f"bench-{version}",
        model=str(model),
        version=version,
        sha256=await hash_file(model),
        devices=keys,
        canary=canary,
        waves=wave_sizes(len(keys), canary, "100%"),
        device_timeout_s=30,
    )
    state = await RolloutRunner(RolloutState.start(plan), store=store, devices=config).run()
    if state.status != "done":
        bad = [(d.name, d.stage, d.reason) for d in state.devices if d.stage != "done"]
        raise SystemExit(f"rollout {version} ended {state.status}: {state.abort_reason} {bad}")
    return state


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp_name:
        tmp = Path(tmp_name)
        models = {
            name: make_conv_detector(tmp / f"{name}.onnx", imgsz=160, nc=4, width=8, seed=seed)
            for seed, name in enumerate(("base", "single", "staged"))
        }
        print(f"model: {models['staged'].stat().st_size / 1e6:.2f} MB conv detector, 160x160", flush=True)
        procs = []
        try:
            for i in range(args.devices):
                home = tmp / f"dev-{i}"
                home.mkdir(mode=0o700)
                (home / "config.toml").write_text(
                    f"[models]\nprobation_s = {args.probation}\nprobation_min_frames = 3\nconfidence_ratio = 0\n"
                    "latency_factor = 1000\n"
                )
                cmd = serve_command(home, f"demo:?fps={args.fps:g}&size=320x240", mdns=False)
                cmd += ["--model", str(models["base"])]
                log = tmp / f"dev-{i}.log"
                with log.open("wb") as err:
                    procs.append(
                        (
                            await asyncio.create_subprocess_exec(
                                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=err
                            ),
                            home,
                            log,
                        )
                    )
            config = ConsoleConfig(tmp / "console")
            for i, (proc, home, log) in enumerate(procs):
                info, device = await wait_ready(proc, home, log, 120)
                port = int(info.api_url.rsplit(":", 1)[1])
                record = DeviceRecord(id=device.id, name=f"dev-{i}", host="127.0.0.1", port=port)
                config.save_device(record, (await read_token(home)).token)
            keys = [e.key for e in config.load()]
            store = RolloutStore(tmp / "rollouts")
            print(
                f"{len(keys)} agents up; probation {args.probation:g} s, demo source at {args.fps:g} fps",
                flush=True,
            )

            singles = []
            for i, key in enumerate(keys):
                t0 = time.perf_counter()
                await rollout([key], models["single"], f"single{i}", config, store, canary=0)
                singles.append(time.perf_counter() - t0)
                print(f"  one device  dev-{i}: {singles[-1]:6.2f} s", flush=True)
            total = sum(singles)

            cpu0, t0 = cpu_now(), time.perf_counter()
            await rollout(keys, models["staged"], "staged", config, store, canary=1)
            wall, cpu = time.perf_counter() - t0, cpu_now() - cpu0
        finally:
            for proc, _, _ in procs:
                await stop_process(proc)

    print()
    print(
        f"one at a time, summed   {total:7.2f} s  ({len(singles)} devices, mean {total / len(singles):.2f} s)"
    )
    print(f"staged rollout (1 + {len(keys) - 1})  {wall:7.2f} s")
    print(f"ratio staged / summed   {wall / total:7.2f}")
    print(f"console CPU             {cpu:7.2f} s over {wall:.2f} s ({100 * cpu / wall:.1f}% of one core)")
    print(f"machine                 {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=6)
    parser.add_argument("--probation", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
