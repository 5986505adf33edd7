"""``fieldtui demo --cameras 3``: a real demo agent with three synthetic cameras on the one demo model,
each its own scene, the last with faults on a schedule; the text demo prints a line per camera."""

from __future__ import annotations

import io

import pytest

from fieldtui.config import ConsoleConfig
from fieldtui.demo import DEMO_FAULTS, DemoError, cameras_config, start_demo_agent, watch


async def test_three_demo_cameras_each_their_own_scene_one_with_faults(tmp_path):
    home, config = tmp_path / "demo-home", ConsoleConfig(tmp_path / "console")
    async with start_demo_agent(home=home, config=config, mdns=False, fps=4, cameras=3) as demo:
        listed = (await demo.client.cameras()).cameras
        assert [c.name for c in listed] == ["cam1", "cam2", "cam3"]
        uris = [c.source.uri for c in listed]
        assert len({u.split("seed=")[1][:1] for u in uris}) == 3  # three scenes
        assert [f"faults={DEMO_FAULTS}" in u for u in uris] == [False, False, True]
        out = io.StringIO()
        await watch(demo.client, out, lines=3, cameras=True, interval=0.5)
    lines = out.getvalue().splitlines()
    last = [line for line in lines if line.startswith("cam")][-3:]
    assert [line.split()[0] for line in last] == ["cam1", "cam2", "cam3"], lines
    assert all(" fps " in line and "p95" in line for line in last)


def test_a_camera_count_the_demo_cannot_run_is_one_line():
    with pytest.raises(DemoError, match="the demo runs 2 to 8 cameras"):
        cameras_config(9, faults=False)
