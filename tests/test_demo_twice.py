"""Two ``fieldtui demo`` at once on one laptop: the second attaches to the agent the first started (the
same pid and port, said so) instead of starting a rival on the same home, and leaves it running."""

from __future__ import annotations

import os

from fieldtui.config import ConsoleConfig
from fieldtui.demo import demo_banner, running_pid, start_demo_agent


async def test_a_second_demo_attaches_to_the_running_agent_and_says_so(tmp_path):
    home, config = tmp_path / "demo-home", ConsoleConfig(tmp_path / "console")
    async with start_demo_agent(home=home, config=config, mdns=False, fps=5) as first:
        assert not first.attached and first.pid == running_pid(home)
        async with start_demo_agent(home=home, config=config, mdns=False, fps=5) as second:
            assert second.attached
            assert (second.pid, second.device.api_url) == (first.pid, first.device.api_url)
            assert (await second.client.device()).id == first.device.id
            banner = demo_banner(second)
            assert banner.startswith("another `fieldtui demo` is already running its agent from ")
            assert f"pid {first.pid}," in banner and first.device.api_url in banner
        # the second one ended: the agent it attached to still serves the first
        assert (await first.client.health()).status in ("ok", "degraded")
        pid = first.pid
    assert running_pid(home) is None  # the first one stopped it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"the demo agent {pid} is still running")
    assert [e.device.name for e in config.load()] == ["fieldtui-demo"]  # one saved device, not two
