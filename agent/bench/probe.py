"""What a benchmark reads from the device beside its timings: CPU use, memory, heat and throttling.

Every reading is best effort: a file or tool the device does not have gives ``None``, never an error,
and the result says which source a throttling verdict came from.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fieldtui.protocol import SystemUse


@dataclass
class CpuClock:
    """Process CPU time against wall time between :meth:`start` and :meth:`percent`."""

    wall: float = 0.0
    cpu: float = 0.0

    def start(self) -> CpuClock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def percent(self) -> float:
        wall = time.perf_counter() - self.wall
        return 100.0 * (time.process_time() - self.cpu) / wall if wall > 0 else 0.0


def memory_mb(status: Path = Path("/proc/self/status")) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) in MB from /proc/self/status; (None, None) where there is no /proc."""
    rss = hwm = None
    try:
        for line in status.read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                kb = float(line.split()[1])
                if line.startswith("VmRSS:"):
                    rss = kb / 1024
                else:
                    hwm = kb / 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss, hwm


def temperature_c(pattern: str = "/sys/class/thermal/thermal_zone*/temp") -> float | None:
    """The hottest thermal zone in degrees C (the files hold millidegrees), or None."""
    temps = []
    for name in glob.glob(pattern):
        try:
            temps.append(int(Path(name).read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return max(temps) if temps else None


def _vcgencmd() -> tuple[bool, str] | None:
    tool = shutil.which("vcgencmd")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        flags = int(out.strip().split("=", 1)[1], 16)  # "throttled=0x50005"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    # bits 0-3: under-voltage, arm frequency capped, throttled, soft temperature limit (now)
    return bool(flags & 0xF), f"get_throttled={flags:#x}"


def _cpufreq(root: str = "/sys/devices/system/cpu") -> tuple[bool, str] | None:
    ratios = []
    for cur_file in glob.glob(f"{root}/cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            cur = int(Path(cur_file).read_text())
            top = int((Path(cur_file).parent / "cpuinfo_max_freq").read_text())
        except (OSError, ValueError):
            continue
        if top > 0:
            ratios.append((cur / top, cur, top))
    if not ratios:
        return None
    ratio, cur, top = max(ratios)  # the fastest core: under load, one below 90 % of max is held back
    return ratio < 0.9, f"cpufreq {cur / 1e6:.2f}/{top / 1e6:.2f} GHz"


def throttling() -> tuple[bool | None, str | None, str | None]:
    """(throttled, source, detail): Raspberry Pi's vcgencmd first, else Linux cpufreq, else unknown."""
    for source, probe in (("vcgencmd", _vcgencmd), ("cpufreq", _cpufreq)):
        found = probe()
        if found is not None:
            return found[0], source, found[1]
    return None, None, None


def system_use(clock: CpuClock) -> SystemUse:
    rss, hwm = memory_mb()
    throttled, source, detail = throttling()
    return SystemUse(
        cpu_percent=round(clock.percent(), 1),
        rss_mb=None if rss is None else round(rss, 1),
        hwm_mb=None if hwm is None else round(hwm, 1),
        temperature_c=temperature_c(),
        throttled=throttled,
        throttle_source=source,
        throttle_detail=detail,
    )
