"""The console's pieces on their own: charts, half-block pictures, count bars, findings, coalescing."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import pytest
from PIL import Image
from textual.app import App, ComposeResult
from textual.message import Message

from fieldtui.diagnosis import diagnose
from fieldtui.protocol import CameraHealth, DeviceRecord, HealthReport
from screens.app import FieldtuiApp
from screens.dashboard import DashboardScreen
from screens.widgets.bars import CountBars, bar
from screens.widgets.chart import ALERT_MARK, TimeChart, nice_ceiling
from screens.widgets.halfblock import UPPER_HALF, HalfBlockImage, decode_picture, fit
from tests.tui_fakes import T0, FakeAgent, FakeFleet, pipeline_status, sample, samples


class Harness(App[None]):
    def __init__(self, *widgets) -> None:
        super().__init__()
        self.widgets = widgets

    def compose(self) -> ComposeResult:
        yield from self.widgets


def _png(pixels: list[list[tuple[int, int, int]]]) -> bytes:
    image = Image.new("RGB", (len(pixels[0]), len(pixels)))
    for y, row in enumerate(pixels):
        for x, rgb in enumerate(row):
            image.putpixel((x, y), rgb)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_nice_ceiling_gives_round_scales():
    assert [nice_ceiling(v) for v in (0.7, 1.0, 1.3, 2.2, 3.1, 7.0, 42.0, 0.0)] == [
        1.0,
        1.0,
        2.0,
        2.5,
        5.0,
        10.0,
        50.0,
        1.0,
    ]


async def test_chart_draws_bars_the_alert_line_and_bad_columns():
    chart = TimeChart("confidence", top=1.0, alert=0.6)
    chart.styles.width, chart.styles.height, chart.styles.padding = 20, 5, 0
    async with Harness(chart).run_test(size=(40, 10)) as pilot:
        chart.plot([0.9] * 10 + [0.3] * 10, caption="avg 0.30")
        await pilot.pause()
        lines = [chart.render_line(y) for y in range(5)]
        assert lines[0].text == "confidence  avg 0.30"  # the figures stay, the scale gives way
        plot = [line.text for line in lines[1:]]  # 4 rows, top first: 32 eighths, 0.6 -> level 19
        assert plot[1] == "█" * 10 + ALERT_MARK * 10  # the line shows where the bars are below it
        assert plot[3] == "█" * 20 and plot[0][:10] == "▅" * 10  # 0.9 of 32 eighths = 29: 3 rows + 5/8
        bad = chart.get_component_rich_style("timechart--bad").color
        good = chart.get_component_rich_style("timechart--front").color
        colors = [seg.style.color for seg in lines[4] if seg.text.strip()]
        assert colors[0] == good and colors[-1] == bad


async def test_chart_shows_the_newest_points_and_the_second_series_behind():
    chart = TimeChart("latency", unit=" ms")
    chart.styles.width, chart.styles.height, chart.styles.padding = 10, 3, 0
    async with Harness(chart).run_test(size=(20, 6)) as pilot:
        chart.plot(list(range(100)), behind=[v * 2 for v in range(100)])
        await pilot.pause()
        assert chart.points == 100
        # The newest 10 points (90..99, 180..198 behind) set the scale; no room for the title at this width.
        assert chart.render_line(0).text == "max 250 ms"
        bottom = chart.render_line(2)
        assert len(bottom.text) == 10 and set(bottom.text) <= set(" ▁▂▃▄▅▆▇█")


def test_fit_keeps_the_aspect_in_square_pixels():
    assert fit(640, 480, 50, 19) == (50, 38)
    assert fit(640, 480, 100, 10) == (27, 20)
    assert fit(0, 480, 50, 19) == (0, 0)


def test_decode_picture_scales_and_rejects_non_images():
    picture = decode_picture(_png([[(255, 0, 0)] * 64] * 48), 16, 6)
    assert (picture.width, picture.height) == (16, 12) and picture.pixel(3, 3) == (255, 0, 0)
    with pytest.raises(ValueError, match="not a picture"):
        decode_picture(b"<html>no</html>", 16, 6)


async def test_half_blocks_paint_the_upper_pixel_in_front_and_the_lower_behind():
    view = HalfBlockImage()
    view.styles.width, view.styles.height = 2, 1
    red, blue = (255, 0, 0), (0, 0, 255)
    async with Harness(view).run_test(size=(10, 4)) as pilot:
        view.show(decode_picture(_png([[red, red], [blue, blue]]), 2, 1))
        await pilot.pause()
        [segment] = list(view.render_line(0))
        assert segment.text == UPPER_HALF * 2
        assert segment.style.color.triplet == red and segment.style.bgcolor.triplet == blue
        view.show_message("agent unreachable")
        await pilot.pause()
        assert view.has_class("-stale") and view.picture is not None


async def test_count_bars_list_every_class_of_the_model():
    bars = CountBars()
    bars.styles.width = 40
    async with Harness(bars).run_test(size=(50, 8)) as pilot:
        bars.counts({"circle": 10, "square": 5}, {0: "circle", 1: "square", 2: "triangle"})
        await pilot.pause()
        lines = str(bars.render()).splitlines()
        assert [line.split()[0] for line in lines] == ["circle", "square", "triangle"]
        assert lines[2].split()[1] == "0"
    assert bar(0.5, 4) == "██" and bar(0.5, 1) == "▌" and bar(0, 5) == ""


@pytest.mark.parametrize(
    ("confidence", "camera", "expected"),
    [
        (
            0.41,
            CameraHealth(brightness=120, sharpness=30, sharpness_ratio=0.3, ok=False),
            "sharpness down 70%",
        ),
        (0.41, CameraHealth(brightness=20, sharpness=1, covered=True, ok=False), "lens covered?"),
        (0.41, CameraHealth(brightness=120, sharpness=300, frozen=True, ok=False), "camera stuck?"),
        (0.41, CameraHealth(brightness=120, sharpness=300, sharpness_ratio=1.0), "scene or model drift?"),
        (
            0.90,
            CameraHealth(brightness=120, sharpness=300, ok=False, reasons=["frame frozen"]),
            "camera: frame",
        ),
    ],
)
def test_findings_combine_confidence_and_camera(confidence, camera, expected):
    s = sample(1, T0, confidence=confidence, camera=camera)
    [finding] = diagnose(s)
    assert expected in finding
    if confidence < 0.6:
        assert finding.startswith(f"confidence {confidence:.2f}")


def test_with_the_agents_report_the_findings_are_its_reasons_and_nothing_else():
    """One verdict: the dashboard shows what the device list and `fieldtui status` show."""
    drifting = sample(1, T0, confidence=0.44, camera=CameraHealth(brightness=120, sharpness=300))
    drifting = drifting.model_copy(update={"drop_rate": 0.35})
    ok = HealthReport(status="ok", version="0", uptime_s=1)
    assert diagnose(drifting, ok) == []  # the agent judged it against last good's baseline: ok
    health = HealthReport(
        status="failing", reasons=["pipeline failed: x", "camera: y"], version="0", uptime_s=1
    )
    assert diagnose(drifting, health) == ["pipeline failed: x", "camera: y"]
    # without a report (none received yet) the sample is read, in the same words
    found = diagnose(drifting)
    assert found[0].startswith("confidence 0.44 with a healthy camera") and found[1].startswith(
        "dropping 35%"
    )
    assert diagnose(sample(1, T0)) == [] and diagnose(None) == []


def test_samples_coalesce_but_none_is_lost_from_the_charts():
    a, b = DashboardScreen.SampleArrived(sample(1, T0)), DashboardScreen.SampleArrived(sample(2, T0))
    assert a.can_replace(b) and not a.can_replace(Message())


async def test_a_burst_of_samples_is_rendered_as_its_newest():
    burst = samples(300)

    async def feed():
        for s in burst:  # no await between them: the UI gets no chance to render in between
            yield "sample", s
        await asyncio.Event().wait()

    record = DeviceRecord(name="gate-3", host="10.0.4.17")
    agent = FakeAgent(status=pipeline_status(), feed=feed)
    handled: list[Message] = []
    app = FieldtuiApp(FakeFleet([(record, agent)]), open_device=record, clock=lambda: T0)
    async with app.run_test(size=(120, 40), message_hook=handled.append) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            screen = app.screen
            if isinstance(screen, DashboardScreen) and screen.rendered_ts == burst[-1].ts:
                break
        assert isinstance(screen, DashboardScreen) and screen.rendered_ts == burst[-1].ts
        arrived = [m for m in handled if isinstance(m, DashboardScreen.SampleArrived)]
        assert screen.telemetry.count == 300  # every sample is in the charts' history
        assert len(arrived) < 30 and screen.renders < 30  # but the screen handled a handful
    assert app._exception is None


def test_the_screens_import_neither_the_agent_nor_vendor_sdks():
    code = (
        "import sys, screens.app, screens.dashboard, screens.logs, screens.help, screens.add_device; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'agent', 'cv2', 'onnxruntime', 'numpy', 'fastapi', 'uvicorn'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
