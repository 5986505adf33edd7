"""``fieldtui trio-test HOST`` as a technician runs it (a real subprocess) against a real agent that
forwards to the fake Trio server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldtui.client import AgentClient
from fieldtui.errors import AgentClientError
from fieldtui.protocol import ForwardingRules, ForwardingUpdate, ForwardResult
from tests.fake_trio import FakeTrio, ok, trio_error

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-trio-cli-5e6f7a8b9c0d1e2f"


@pytest.fixture
def trio() -> Iterator[FakeTrio]:
    with FakeTrio() as fake:
        yield fake


def fieldtui(console: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FIELDTUI_CONFIG_DIR": str(console)}
    return subprocess.run(
        [sys.executable, "-m", "fieldtui", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_trio_test_prints_the_answer_or_the_fix(agent_inproc, trio: FakeTrio, tmp_path: Path) -> None:
    console = tmp_path / "console"
    with agent_inproc.client() as c:
        c.put(
            "/v1/forwarding", json={"base_url": trio.url, "stream_url": "rtsp://cam/live", "api_key": KEY}
        ).raise_for_status()
    added = fieldtui(console, "add", agent_inproc.url, "--token", agent_inproc.token, "--name", "dock")
    assert added.returncode == 0, added.stderr

    trio.reply(ok(triggered=True, explanation="a cross lies on the floor"))
    result = fieldtui(console, "trio-test", "dock", "--condition", "is anything on the floor?", "--json")
    assert result.returncode == 0, result.stderr
    doc = ForwardResult.model_validate(json.loads(result.stdout))
    assert doc.ok and doc.triggered and doc.http_status == 200
    assert doc.explanation == "a cross lies on the floor"
    assert trio.requests[-1].json()["condition"] == "is anything on the floor?"

    trio.reply(trio_error(400, "STREAM_OFFLINE", "the stream is offline"))
    plain = fieldtui(console, "trio-test", "dock")
    assert plain.returncode == 1
    lines = plain.stdout.splitlines()
    assert lines[0].startswith("forward   check-once to ") and "HTTP 400" in lines[0]
    assert lines[1] == "error     STREAM_OFFLINE: Trio answered 400: the stream is offline"
    assert lines[2].startswith("fix       ") and "frame mode" in lines[2]
    for out in (result, plain):
        assert KEY not in out.stdout + out.stderr


def test_trio_test_without_a_token_is_one_line(tmp_path: Path, agent_inproc) -> None:
    result = fieldtui(tmp_path / "console", "trio-test", agent_inproc.url)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("fieldtui: ") and "token" in result.stderr


async def test_client_sets_forwarding_and_tests_it(agent_inproc, trio: FakeTrio) -> None:
    async with AgentClient(agent_inproc.url, agent_inproc.token) as client:
        update = ForwardingUpdate(
            base_url=trio.url, mode="frame", api_key=KEY, rules=ForwardingRules(burst=5)
        )
        state = await client.forwarding_update(update)
        assert state.mode == "frame" and state.rules.burst == 5 and KEY not in state.model_dump_json()
        assert (await client.forwarding()).api_key.endswith("(key file)")
        trio.reply(ok())
        result = await client.trio_test(timeout_s=5)
        assert result.ok and result.mode == "frame" and result.payload_bytes > 1000  # the latest frame
        with pytest.raises(AgentClientError, match="base_url"):
            await client.forwarding_update(ForwardingUpdate(base_url="trio.example"))
