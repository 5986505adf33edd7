"""The dashboard's text panels: who the device is, what it runs, how its camera looks.

Pure functions from protocol models to Rich text, so the screen module keeps to wiring and the wording
can be read (and tested) in one place.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from rich.text import Text

from fieldtui.diagnosis import BRIGHT, DARK, SHARPNESS_DROP
from fieldtui.protocol import CameraHealth, DeviceInfo, DeviceRecord, PipelineStatus, ThreadPolicy

STATE_STYLE = {"running": "green", "starting": "yellow", "reconnecting": "yellow", "failed": "bold red"}


def link_badge(record: DeviceRecord) -> Text:
    """``HTTPS pinned`` (green), ``HTTPS`` (CA-checked), ``HTTP`` (yellow: the LAN sees the token),
    and the address under it."""
    if record.tls and record.tls_fingerprint:
        badge = Text(" HTTPS pinned ", style="bold black on green")
    elif record.tls:
        badge = Text(" HTTPS ", style="bold black on cyan")
    elif "ssh" in record.origin and not record.addresses:
        badge = Text(" SSH ", style="bold black on blue")
    else:
        badge = Text(" HTTP ", style="bold black on yellow")
    badge.append(f"\n{record.host}:{record.port}", style="dim")
    return badge


def model_label(status: PipelineStatus | None) -> str:
    model = status.model if status is not None else None
    if model is None:
        return "no model"
    name = model.version or PurePosixPath(model.path).name
    shape = "x".join(str(v) for v in model.input_shape)
    return f"{name} ({model.layout}, {shape} {model.input_dtype}) on {model.backend}"


def source_text(status: PipelineStatus | None) -> str:
    src = status.source if status is not None else None
    if src is None:
        return "no source"
    size = f" {src.width}x{src.height}" if src.width and src.height else ""
    state = "up" if src.up else f"down: {src.reason or 'no frames'}"
    return f"{src.uri} ({src.kind}{size}, {state})"


def threads_text(policy: ThreadPolicy | None) -> str:
    """The inference thread policy in a few words, for the throughput chart: ``2 threads, measured
    24.8 fps`` (the chosen configuration and its measured FPS), ``1 thread, fixed``, ``measuring
    threads…`` or ``threads n/a``."""
    if policy is None:
        return ""
    if policy.mode == "n/a":
        return "threads n/a"
    if policy.mode == "measuring":
        return "measuring threads…"
    count = f"{policy.threads} thread{'s' * (policy.threads != 1)}" if policy.threads else "default threads"
    if policy.spinning:
        count += " spinning"
    if policy.mode == "measured" and policy.fps is not None:
        return f"{count}, measured {policy.fps:.1f} fps"
    return f"{count}, {policy.mode}"


def identity_text(
    record: DeviceRecord, device: DeviceInfo | None, status: PipelineStatus | None, *, link_up: bool = True
) -> Text:
    """Two lines: who (name, id, platform, agent version, accelerators); what (pipeline, model, source).

    With the link down the pipeline's state is not known, and it says so instead of the last one seen.
    """
    text = Text()
    text.append(device.name if device else record.name, style="bold")
    if device is not None:
        text.append(f"  id {device.id[:12]}", style="dim")
        text.append(f"  {device.platform}")
        text.append(f"  fieldtui-agent {device.version}", style="dim")
        if device.accelerators:
            text.append(f"  {', '.join(device.accelerators)}")
    else:
        text.append(f"  connecting to {record.api_url}…", style="dim")
    text.append("\n")
    if status is not None:  # the state first: a narrow terminal cuts the end of the line, never it
        text.append("pipeline ", style="dim")
        if link_up:
            text.append(status.state, style=STATE_STYLE.get(status.state, ""))
        else:
            text.append("unknown (link lost)", style="bold yellow")
        text.append("  ")
    text.append("model ", style="dim")
    text.append(model_label(status))
    if status is not None:
        text.append("  source ", style="dim")
        text.append(source_text(status))
    return text


def camera_text(camera: CameraHealth | None) -> Text:
    """Brightness, sharpness against the camera's own baseline, frozen, covered: red when wrong."""
    if camera is None:
        return Text("no measurement yet", style="dim")

    def flag(name: str, bad: bool) -> Text:
        return Text(f"{name} {'YES' if bad else 'no'}", style="bold red" if bad else "green")

    text = Text()
    dim_or_bright = camera.brightness < DARK or camera.brightness > BRIGHT
    text.append("brightness ", style="dim")
    text.append(f"{camera.brightness:5.0f}", style="bold red" if dim_or_bright else "")
    text.append("   sharpness ", style="dim")
    if camera.sharpness_ratio is None:
        text.append("learning baseline", style="dim")
    else:
        text.append(
            f"{camera.sharpness_ratio:4.2f}x",
            style="bold red" if camera.sharpness_ratio < SHARPNESS_DROP else "",
        )
        text.append(" usual", style="dim")
    text.append("\n")
    text.append_text(flag("frozen", camera.frozen))
    text.append("   ")
    text.append_text(flag("covered", camera.covered))
    text.append("   ")
    text.append("camera ok" if camera.ok else "camera NOT ok", style="green" if camera.ok else "bold red")
    return text
