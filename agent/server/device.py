"""What this device is: identity, platform, accelerators present, backends usable (``GET /v1/device``)."""

from __future__ import annotations

import glob
import ipaddress
import logging
import platform
import socket
import sys
from pathlib import Path

from fieldtui.protocol import BackendInfo, DeviceInfo, __version__

log = logging.getLogger("fieldtui.agent.device")

# (glob under the root, what the technician should read) - device nodes and driver files the
# accelerators' kernel drivers create; presence says "hardware and driver here", nothing about SDKs.
_ACCELERATOR_MARKERS: list[tuple[str, str]] = [
    ("dev/hailo*", "Hailo ({name})"),
    ("proc/driver/nvidia/version", "NVIDIA GPU (driver loaded)"),
    ("dev/nvhost-*", "NVIDIA Jetson GPU ({name})"),
    ("dev/nvgpu", "NVIDIA Jetson GPU (nvgpu)"),
    ("dev/nvidia[0-9]*", "NVIDIA GPU ({name})"),
    ("dev/apex_*", "Google Coral Edge TPU ({name})"),
    ("dev/accel/accel*", "NPU ({name})"),
    ("dev/dri/renderD*", "GPU render node ({name})"),
]


def find_accelerators(root: str | Path = "/") -> list[str]:
    """Accelerators whose drivers are loaded, one line each (``root`` lets tests fake a /dev)."""
    found: list[str] = []
    for pattern, label in _ACCELERATOR_MARKERS:
        for path in sorted(glob.glob(str(Path(root) / pattern))):
            line = label.format(name=Path(path).name)
            if line not in found:
                found.append(line)
    model = _device_tree_model(Path(root))
    if model:
        found.insert(0, f"board: {model}")
    return found


def _device_tree_model(root: Path) -> str | None:
    # Raspberry Pi and Jetson boards name themselves here ("Raspberry Pi 5 Model B Rev 1.0")
    try:
        return (root / "proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        return None


def backends() -> list[BackendInfo]:
    """Every known backend and why it is or is not available (never raises: this is a status page)."""
    try:
        from agent.inference.backends import doctor

        return doctor()
    except Exception as err:  # noqa: BLE001 - one broken backend module must not hide the device
        log.exception("backend doctor failed")
        return [
            BackendInfo(key="?", available=False, reason=f"backend check failed: {type(err).__name__}: {err}")
        ]


def device_info(
    *,
    device_id: str,
    name: str,
    api_url: str | None = None,
    tls_fingerprint: str | None = None,
    backend_infos: list[BackendInfo] | None = None,
) -> DeviceInfo:
    return DeviceInfo(
        id=device_id,
        name=name,
        version=__version__,
        hostname=socket.gethostname(),
        platform=platform.platform(),
        machine=platform.machine(),
        python=sys.version.split()[0],
        accelerators=find_accelerators(),
        backends=backends() if backend_infos is None else backend_infos,
        api_url=api_url,
        tls_fingerprint=tls_fingerprint,
    )


def is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def lan_addresses() -> list[str]:
    """Every non-loopback IPv4 address of this device, in interface order."""
    import ifaddr  # a zeroconf dependency

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if (
                isinstance(ip.ip, str)
                and is_ipv4(ip.ip)
                and not ip.ip.startswith("127.")
                and ip.ip not in found
            ):
                found.append(ip.ip)
    return found


def public_url(host: str, port: int, tls: bool) -> str:
    """The URL a console should use: a wildcard bind is named by this device's first LAN address."""
    if host in ("0.0.0.0", "", "::"):
        found = lan_addresses()
        host = found[0] if found else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
