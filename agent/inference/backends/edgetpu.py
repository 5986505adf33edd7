"""Coral Edge TPU: is there one, and can LiteRT reach it through libedgetpu's delegate?

An ``*_edgetpu.tflite`` model (``edgetpu_compiler``, off-device, Linux x86-64 only) replaces the layers
the TPU runs with one ``edgetpu-custom-op``; only libedgetpu's delegate, loaded with
``load_delegate('libedgetpu.so.1')``, can run it. What has to be there, each missing piece said as what
to do:

- the library: ``libedgetpu1-std`` (or ``-max``) from Coral's apt repository (``libedgetpu.1.dylib`` on
  macOS, ``edgetpu.dll`` on Windows);
- a device: the USB Accelerator shows as ``1a6e:089a`` until its firmware is loaded, then as
  ``18d1:9302``; the M.2/Mini PCIe card as ``/dev/apex_0`` once the gasket and apex drivers are loaded
  (PCI id ``1ac1:089a`` without them);
- for USB, the udev rule that lets a non-root user open it (``libedgetpu1-std`` installs
  ``/lib/udev/rules.d/60-libedgetpu1-std.rules``), and a USB 3 port (it runs on USB 2, several times
  slower).

Paths are parameters so tests can point them at a directory tree of their own.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

EDGETPU_OP = "edgetpu-custom-op"
USB_IDS = {("1a6e", "089a"): "Coral USB Accelerator (firmware not yet loaded)",
           ("18d1", "9302"): "Coral USB Accelerator"}  # fmt: skip
PCI_ID = ("0x1ac1", "0x089a")
LIB_HINT = "install libedgetpu1-std from Coral's apt repository (the coral-edgetpu-stable channel)"
UDEV_RULE_DIRS = (Path("/etc/udev/rules.d"), Path("/lib/udev/rules.d"), Path("/usr/lib/udev/rules.d"))


def delegate_library(platform: str | None = None) -> str:
    """The name ``load_delegate`` is given: libedgetpu's shared library on this platform."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        return "edgetpu.dll"
    if platform == "darwin":
        return "libedgetpu.1.dylib"
    return "libedgetpu.so.1"


def _library_present(name: str, lib_dirs: tuple[Path, ...] | None) -> bool:
    if lib_dirs is not None:  # tests: look only where told
        return any((d / name).exists() for d in lib_dirs)
    if ctypes.util.find_library("edgetpu"):
        return True
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class UsbTpu:
    name: str
    node: Path | None  # /dev/bus/usb/BBB/DDD
    speed_mbps: int | None


@dataclass(frozen=True, slots=True)
class EdgeTpuStatus:
    ok: bool
    reason: str
    usb: list[UsbTpu] = field(default_factory=list)
    pcie: list[str] = field(default_factory=list)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def find_usb(sys_usb: Path = Path("/sys/bus/usb/devices"), dev: Path = Path("/dev")) -> list[UsbTpu]:
    found = []
    for d in sorted(sys_usb.glob("*")) if sys_usb.is_dir() else []:
        ids = (_read(d / "idVendor"), _read(d / "idProduct"))
        if ids not in USB_IDS:
            continue
        bus, devnum = _read(d / "busnum"), _read(d / "devnum")
        node = dev / "bus" / "usb" / f"{int(bus):03d}" / f"{int(devnum):03d}" if bus and devnum else None
        speed = _read(d / "speed")
        found.append(UsbTpu(USB_IDS[ids], node, int(float(speed)) if speed else None))  # type: ignore[index]
    return found


def find_pcie(dev: Path = Path("/dev")) -> list[str]:
    return sorted(str(p) for p in dev.glob("apex_*"))


def _pci_without_driver(sys_pci: Path) -> bool:
    for d in sys_pci.glob("*") if sys_pci.is_dir() else []:
        if (_read(d / "vendor"), _read(d / "device")) == PCI_ID:
            return True
    return False


def edgetpu_status(
    *,
    sys_usb: Path = Path("/sys/bus/usb/devices"),
    sys_pci: Path = Path("/sys/bus/pci/devices"),
    dev: Path = Path("/dev"),
    lib_dirs: tuple[Path, ...] | None = None,
    udev_dirs: tuple[Path, ...] = UDEV_RULE_DIRS,
    platform: str | None = None,
    can_open: Callable[[Path], bool] = lambda node: os.access(node, os.R_OK | os.W_OK),
) -> EdgeTpuStatus:
    """Whether an Edge TPU model can run here, and precisely what is missing when not."""
    lib = delegate_library(platform)
    usb, pcie = find_usb(sys_usb, dev), find_pcie(dev)
    missing = []
    if not _library_present(lib, lib_dirs):
        missing.append(f"{lib} not found: {LIB_HINT}")
    if not usb and not pcie:
        if _pci_without_driver(sys_pci):
            missing.append(
                "a Coral PCIe card is present but /dev/apex_0 is not: install the gasket-dkms driver "
                "from Coral's apt repository (it loads the gasket and apex modules) and reboot"
            )
        else:
            missing.append(
                "no Coral Edge TPU found (USB 1a6e:089a or 18d1:9302, PCIe /dev/apex_*): plug in the USB "
                "Accelerator or fit the M.2/PCIe card"
            )
    for tpu in usb:
        if tpu.node is not None and tpu.node.exists() and not can_open(tpu.node):
            has_rule = any(p.name.endswith("libedgetpu1-std.rules") or "edgetpu" in p.name
                           for d in udev_dirs for p in (d.glob("*.rules") if d.is_dir() else []))  # fmt: skip
            missing.append(
                f"{tpu.node} is not writable by this user: "
                + (
                    "replug the Accelerator so the udev rule applies, and add the user to plugdev"
                    if has_rule
                    else "install the udev rule (libedgetpu1-std ships it) and replug"
                )  # fmt: skip
            )
    if missing:
        return EdgeTpuStatus(False, "; ".join(missing), usb, pcie)
    where = ", ".join([f"{t.name} at {t.node}" for t in usb] + pcie)
    slow = [t for t in usb if t.speed_mbps is not None and t.speed_mbps < 5000]
    note = " (on a USB 2 port: use a USB 3 port, it is several times faster)" if slow else ""
    return EdgeTpuStatus(True, f"{where} with {lib}{note}", usb, pcie)
