"""The visit report (fieldtui/report.py) as one self-contained HTML file.

Inline CSS, snapshots as ``data:`` URIs, plots as inline SVG drawn here; no script, and a
Content-Security-Policy that forbids any request leaving the file, so it opens offline and can be
mailed as it is. Every value goes through :func:`html.escape`. Printed, it fits A4: rows never split
across pages, plots are black-on-white with labelled axes.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
@page { size: A4; margin: 14mm; }
body { font: 13px/1.4 system-ui, sans-serif; color: #111; margin: 0 auto; max-width: 180mm; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 18px 0 6px; border-bottom: 1px solid #999; }
h3 { font-size: 14px; margin: 12px 0 4px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; table-layout: fixed; }
th, td { border: 1px solid #bbb; padding: 2px 4px; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; font-size: 11px; }
th { background: #eee; }
tr { page-break-inside: avoid; break-inside: avoid; }
.bad { color: #a00; font-weight: 600; } .ok { color: #060; } .muted { color: #555; }
.device { page-break-inside: auto; }
.keep { page-break-inside: avoid; break-inside: avoid; }
img.snap { max-width: 90mm; border: 1px solid #999; }
svg { display: block; max-width: 100%; }
"""


def _e(value: Any) -> str:
    return escape("-" if value is None or value == "" else str(value), quote=True)


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _num(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _table(head: list[str], rows: list[list[str | tuple[str, int]]], widths: list[int] | None = None) -> str:
    """Cells are already escaped HTML; a (cell, n) tuple spans n columns."""
    cols = "".join(f'<col style="width:{w}%">' for w in widths) if widths else ""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)

    def td(cell: str | tuple[str, int]) -> str:
        return f'<td colspan="{cell[1]}">{cell[0]}</td>' if isinstance(cell, tuple) else f"<td>{cell}</td>"

    body = "".join("<tr>" + "".join(td(c) for c in r) + "</tr>" for r in rows)
    return f"<table><colgroup>{cols}</colgroup><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def bars_svg(title: str, items: list[tuple[str, float]], unit: str) -> str:
    """Horizontal bars, one per (label, value), the value written at the bar's end."""
    if not items:
        return ""
    top = max(v for _, v in items) or 1.0
    row, left, width = 18, 230, 360
    height = 24 + row * len(items)
    parts = [f'<text x="0" y="14" font-size="12" font-weight="bold">{_e(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = 22 + i * row
        w = max(1.0, width * value / top)
        parts.append(
            f'<text x="{left - 4}" y="{y + 12}" font-size="10" text-anchor="end">{_e(label[:44])}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="#4a6fa5" stroke="#000" stroke-width="0.5"/>'
        )
        parts.append(
            f'<text x="{left + w + 4:.1f}" y="{y + 12}" font-size="10">{value:.2f} {_e(unit)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" viewBox="0 0 680 {height}" '
        f'width="680" height="{height}">{"".join(parts)}</svg>'
    )


LINE_STYLES = ("#1f3f73", "#b34700", "#2e7d32", "#6a1b9a")  # dark enough to print; dashes tell them apart
DASHES = ("", "6 3", "2 2", "8 3 2 3")


def series_svg(
    title: str,
    points: list[tuple[float, float, str]],
    unit: str,
    *,
    lines: list[tuple[str, list[tuple[float, float]]]] | None = None,
) -> str:
    """Points over time (ts, value, label), joined by a line, each marked and labelled; or ``lines``:
    several named series (ts, value) drawn as lines only, with a legend (a minute a point is too dense
    to label). Axes labelled with times and values."""
    named = lines or []
    everything = [(t, v) for t, v, _ in points] + [xy for _, pts in named for xy in pts]
    if not everything:
        return ""
    w, h, x0, y0 = 680, 200, 60, 34
    pw, ph = w - x0 - 20, h - y0 - 40
    t0, t1 = min(t for t, _ in everything), max(t for t, _ in everything)
    vmax = max(v for _, v in everything) or 1.0
    span = (t1 - t0) or 1.0

    def xy(t: float, v: float) -> tuple[float, float]:
        return x0 + (pw * (t - t0) / span if t1 > t0 else pw / 2), y0 + ph - ph * v / vmax

    parts = [
        f'<text x="0" y="12" font-size="12" font-weight="bold">{_e(title)}</text>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + ph}" stroke="#000"/>',
        f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="#000"/>',
        f'<text x="{x0 - 4}" y="{y0 + 8}" font-size="10" text-anchor="end">{vmax:.2f}</text>',
        f'<text x="{x0 - 4}" y="{y0 + ph}" font-size="10" text-anchor="end">0 {_e(unit)}</text>',
        f'<text x="{x0}" y="{y0 + ph + 14}" font-size="10">{_e(_when(t0)[11:19])}</text>',
        f'<text x="{x0 + pw}" y="{y0 + ph + 14}" font-size="10" text-anchor="end">{_e(_when(t1)[11:19])}</text>',
    ]
    points = sorted(points)
    coords = [xy(t, v) for t, v, _ in points]
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#4a6fa5" stroke-width="1.5"/>')
    for (x, y), (_, v, label) in zip(coords, points, strict=True):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#000"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y - 5:.1f}" font-size="9" text-anchor="middle">{_e(label[:20])} {v:.2f}</text>'
        )
    for i, (name, pts) in enumerate(named):
        colour, dash = LINE_STYLES[i % len(LINE_STYLES)], DASHES[i % len(DASHES)]
        style = f'stroke="{colour}" stroke-width="1.5"' + (f' stroke-dasharray="{dash}"' if dash else "")
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in sorted(pts)))
        if len(pts) == 1:
            (x, y) = xy(*pts[0])
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
        else:
            parts.append(f'<polyline points="{path}" fill="none" {style}/>')
        lx = x0 + 10 + 150 * i
        parts.append(f'<line x1="{lx}" y1="{y0 - 10}" x2="{lx + 24}" y2="{y0 - 10}" {style}/>')
        parts.append(f'<text x="{lx + 28}" y="{y0 - 6}" font-size="10">{_e(name[:22])}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}">{"".join(parts)}</svg>'
    )


def _over_the_visit(series: dict | None) -> str:
    """Latency (p50 and p95) and mean confidence a minute at a time, per camera, from the agent's series."""
    if not series or not series.get("points"):
        return '<p class="muted">No per-minute figures from the device for this visit.</p>'
    cameras: dict[str, list[dict]] = {}
    for point in series["points"]:
        cameras.setdefault(point["camera"], []).append(point)
    many = len(cameras) > 1
    latency = [
        (f"{name + ' ' if many else ''}{which}", [(p["ts"], p[key]) for p in pts])
        for name, pts in cameras.items()
        for which, key in (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"))
    ]
    confidence = [
        (name, [(p["ts"], p["confidence_avg"]) for p in pts if p["confidence_avg"] is not None])
        for name, pts in cameras.items()
    ]
    confidence = [c for c in confidence if c[1]]
    minute = series["minute_s"]
    every = "a minute" if minute == 60 else f"every {minute:g} s"
    return (
        f"<h3>Over the visit ({every})</h3>"
        f'<div class="keep">{series_svg("Latency over the visit", [], "ms", lines=latency)}</div>'
        + (
            f'<div class="keep">{series_svg("Mean confidence over the visit", [], "", lines=confidence)}</div>'
            if confidence
            else '<p class="muted">No detection during the visit: no confidence to plot.</p>'
        )
    )


def _outcome(text: str, failed: bool) -> str:
    return f'<span class="{"bad" if failed else "ok"}">{_e(text)}</span>'


def _devices_table(devices: list[dict]) -> str:
    rows = []
    for d in devices:
        seen = (
            "now"
            if d["reachable"]
            else f'<span class="bad">unreachable</span>; last seen {_e(_when(d["last_seen"]))}'
        )
        rows.append(
            [
                _e(d["name"]),
                _e((d.get("id") or "")[:12]),
                _e(d["address"]),
                _e(d.get("platform")),
                _e(", ".join(d.get("accelerators") or []) or "none"),
                _e(d.get("agent_version") or (d.get("last_known") or {}).get("version")),
                _e(d["reached"]),
                seen,
            ]
        )
    head = ["name", "id", "address", "platform", "accelerator", "agent", "reached by", "seen"]
    return _table(head, rows, [12, 11, 13, 14, 10, 7, 18, 15])


def _unreachable(d: dict) -> str:
    known = d.get("last_known") or {}
    return (
        f'<p class="bad">Not reachable when this report was written: {_e(d["error"])}</p>'
        f"<p>Last known: model {_e(known.get('model'))}, backend {_e(known.get('backend'))}, agent "
        f"{_e(known.get('version'))}; last seen {_e(_when(d['last_seen']))}.</p>"
    )


def _device(d: dict) -> str:
    out = [f'<section class="device"><h2>{_e(d["name"])} <span class="muted">{_e(d["address"])}</span></h2>']
    if not d["reachable"]:
        return "".join(out) + _unreachable(d) + "</section>"
    m, health = d["model"], d["health"]
    changed = "changed" if m["changed"] else "unchanged"
    out.append(
        _table(
            ["model", "version", "sha256"],
            [
                ["before the visit", _e(m["before"]["label"]), _e(m["before"]["sha256"])],
                [f"now ({changed})", _e(m["after"]["label"]), _e(m["after"]["sha256"])],
            ],
            [30, 40, 30],
        )
    )
    reasons = "".join(f'<li class="bad">{_e(r)}</li>' for r in health["reasons"])
    notes = "".join(f"<li>{_e(n)}</li>" for n in health["notes"])
    out.append(
        f"<p>Health: {_outcome(health['status'], health['status'] != 'ok')}; pipeline {_e(d['pipeline']['state'])}"
        f"{' (' + _e(d['pipeline']['error']) + ')' if d['pipeline']['error'] else ''}.</p>"
    )
    if reasons or notes:
        out.append(f"<ul>{reasons}{notes}</ul>")
    live = d.get("live")
    if live:
        out.append(
            f"<p>Live: {_num(live['fps'])} FPS, p50 {_num(live['latency_p50_ms'])} ms, mean confidence "
            f"{_num(live['confidence_avg'], '.2f')}, dropped {_num(100 * live['drop_rate'])} %.</p>"
        )
    out.append("<h3>Changes during the visit</h3>")
    actions = d["actions"]
    if actions:
        rows = [
            [
                _e(_when(a["ts"])[11:19]),
                _e(a["what"]),
                _e(a["target"]),
                _outcome(a["outcome"], a["failed"]),
                _e(a["reason"]),
            ]
            for a in actions
        ]
        out.append(_table(["time", "what", "on", "outcome", "reason"], rows, [10, 13, 22, 12, 43]))
    else:
        out.append('<p class="muted">No change recorded on this device during the visit.</p>')
    probation = [
        (a["ts"], a["confidence"], a["target"].split(" -> ")[-1])
        for a in actions
        if a.get("confidence") is not None
    ]
    infer = []  # each activation: the old model's inference time, then the new one's, on the same frames
    for a in actions:
        if a.get("infer_ms") is None:
            continue
        before, _, after = a["target"].rpartition(" -> ")
        if a.get("infer_ms_before") is not None:
            infer.append((a["ts"] - 1e-3, a["infer_ms_before"], before or "before"))
        infer.append((a["ts"], a["infer_ms"], after))
    out.append(
        f'<div class="keep">{series_svg("Confidence measured at each activation", probation, "")}</div>'
    )
    out.append(f'<div class="keep">{series_svg("Inference time at each activation", infer, "ms")}</div>')
    out.append(_over_the_visit(d.get("series")))
    out.append(_benchmarks(d["benchmarks"]))
    if d.get("cameras"):  # a device with several cameras: each one's state and last frame
        out.extend(_camera(c, f"Camera {c['name']}") for c in d["cameras"])
    else:
        out.append(_camera(d["camera"]))
    f = d["forwarding"]
    if f is not None:
        out.append(
            f"<p>Forwarding to Trio: {'enabled' if f['enabled'] else 'disabled'}, mode {_e(f['mode'])}, "
            f"to {_e(f['base_url'])}.</p>"
        )
    for limit in d.get("limits", []):
        out.append(f'<p class="muted">Not in this report: {_e(limit)}.</p>')
    return "".join(out) + "</section>"


def _benchmarks(b: dict) -> str:
    rows = b["results"]
    if not rows:
        return '<h3>Benchmarks</h3><p class="muted">No benchmark run during the visit.</p>'
    table = []
    for r in rows:
        change = r["change"]
        if r["verdict"] in ("better", "worse"):
            change = f'<span class="{"ok" if r["verdict"] == "better" else "bad"}">{_e(change)}</span>'
        else:
            change = _e(change)
        row: list[str | tuple[str, int]] = [
            _e(_when(r["ts"])[11:19]),
            _e(f"{r['model']} ({r['sha256']})"),
            _e(r["config"]),
            _outcome(r["status"], r["status"] == "failed"),
        ]
        if r["status"] == "ok":
            row += [_e(_num(r["p50_ms"], ".2f")), _e(_num(r["fps"])), change]
        else:  # nothing measured: why, and how to get it measured, across the figures' columns
            row.append((_e(r["reason"]), 3))
        table.append(row)
    one_model = len({r["sha256"] for r in rows}) == 1  # then the table says which, and labels fit
    bars = [
        (f"{_when(r['ts'])[11:16]} {'' if one_model else r['model'] + ' '}{r['config']}", r["p50_ms"])
        for r in rows
        if r["p50_ms"] is not None
    ]
    return (
        "<h3>Benchmarks</h3>"
        + _table(
            ["time", "model", "configuration", "status", "p50 ms", "FPS", "against the previous run"],
            table,
            [9, 18, 20, 12, 9, 9, 23],
        )
        + f'<div class="keep">{bars_svg("Benchmark latency, p50 (shorter is faster)", bars, "ms")}</div>'
    )


def _camera(c: dict, title: str = "Camera") -> str:
    state = "up" if c["up"] else f"down: {c['reason'] or 'no frames'}"
    health = c.get("health")
    parts = [f"<h3>{_e(title)}</h3><p>{_e(c['source'])}: {_outcome(state, not c['up'])}"]
    if health:
        verdict = "ok" if health["ok"] else "; ".join(health["reasons"])
        parts.append(
            f"; image {_outcome(verdict, not health['ok'])} (brightness {_num(health['brightness'], '.0f')}, "
            f"sharpness {_num(health['sharpness'], '.0f')})"
        )
    parts.append(".</p>")
    if c.get("snapshot"):
        parts.append(f'<p class="keep"><img class="snap" alt="last frame" src="{_e(c["snapshot"])}"></p>')
    else:
        parts.append(f'<p class="bad">No snapshot: {_e(c.get("snapshot_error"))}</p>')
    return "".join(parts)


def render(report: dict[str, Any]) -> str:
    """The whole HTML document."""
    devices = report["devices"]
    failures = report["failures"]
    title = f"Visit report{' - ' + report['site'] if report['site'] else ''}"
    fails = (
        "<ul>" + "".join(f'<li class="bad">{_e(f)}</li>' for f in failures) + "</ul>"
        if failures
        else '<p class="ok">Nothing failed.</p>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="muted">From {_e(_when(report["since"]))} to {_e(_when(report["generated"]))}; '
        f"{len(devices)} device(s); written by fieldtui {_e(report['console_version'])}.</p>"
        f"<h2>Devices</h2>{_devices_table(devices)}"
        f"<h2>What failed</h2>{fails}" + "".join(_device(d) for d in devices) + "</body></html>\n"
    )
