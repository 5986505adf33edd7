"""``/v1/cameras`` against a real multi-camera agent (``fieldtui-agent serve`` under uvicorn on
127.0.0.1, ``[[cameras]]`` in its config.toml): demo cameras at low FPS, one dead RTSP camera with a
password in its URI, and the one-camera routes still addressing the first camera."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from agent.core.cameras import CameraSpec
from agent.core.config import load_config
from fieldtui.protocol import CameraList, CameraStatus, PipelineStatus
from tests.conftest import REPO, RunningAgent, _clean_env, _terminate, wait_for_runtime
from tests.test_api_events import collect

SECRET = "pw-s3cret"
DEAD = f"rtsp://admin:{SECRET}@127.0.0.1:1/x"


def demo(seed: int) -> str:
    return f"demo:?fps=8&size=160x120&seed={seed}"


def wait_until(predicate, timeout: float = 20.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def _seen(seen: set[str], name: str, data: dict) -> bool:
    if name == "camera":
        seen.add(data["camera_name"])
    return len(seen) >= 3


def _config(cameras: list[tuple[str, str]]) -> str:
    return "".join(f'[[cameras]]\nname = "{n}"\nsource = "{s}"\n\n' for n, s in cameras)


@pytest.fixture
def serve(tmp_path, tiny_model):
    procs: list[subprocess.Popen] = []

    def start(config_text: str, name: str = "a") -> tuple[RunningAgent, subprocess.Popen]:
        home = tmp_path / f"home-{name}"
        home.mkdir(mode=0o700)
        (home / "config.toml").write_text(config_text)
        args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1"]
        args += ["--port", "0", "--no-mdns", "--model", str(tiny_model)]
        stderr_path = tmp_path / f"agent-{name}.stderr"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=err, env=_clean_env(None), cwd=REPO
            )
        procs.append(proc)
        info = wait_for_runtime(home, proc, stderr_path)
        token = (home / "token").read_text().strip()
        agent = RunningAgent(
            url=info["api_url"],
            token=token,
            home=home,
            proc=proc,
            stderr_path=stderr_path,
            _stop=lambda: None,
        )
        return agent, proc

    yield start
    for proc in procs:
        _terminate(proc)


def test_cameras_run_side_by_side_and_change_without_stopping_the_others(serve):
    text = "# site: dock 4\n[models]\nkeep = 3  # small card\n\n"
    text += _config([("front", demo(1)), ("dead", DEAD), ("back", demo(2))])
    agent, proc = serve(text + "# Trio for the dock\n[forwarding]\nenabled = false\n")
    config = agent.home / "config.toml"
    bodies: list[str] = []
    with agent.client(timeout=30) as c:

        def cams() -> CameraList:
            r = c.get("/v1/cameras")
            bodies.append(r.text)
            return CameraList.model_validate(r.json())

        # The dead camera never stops the healthy ones.
        wait_until(lambda: all(cam.sample.frames_total >= 10 for cam in cams().cameras if cam.name != "dead"))
        listed = {cam.name: cam for cam in cams().cameras}
        assert list(listed) == ["front", "dead", "back"]
        assert listed["dead"].state == "reconnecting" and not listed["dead"].source.up
        assert listed["dead"].source.uri == "rtsp://***@127.0.0.1:1/x"
        assert listed["front"].sample.camera_name == "front"
        assert listed["front"].state == "running"
        health = c.get("/v1/health").json()
        assert health["status"] == "degraded"
        assert any(
            r.startswith("camera 'dead' down: could not open rtsp://***@127.0.0.1:1/x")
            for r in health["reasons"]
        )
        bodies.append(json.dumps(health))

        # SSE: the one-camera ``sample`` is the first camera's; ``camera`` carries every running camera's.
        seen: set[str] = set()
        events = collect(agent, 20, params={"events": "sample,camera"}, until=lambda n, d: _seen(seen, n, d))
        assert {"front", "back"} <= seen and "dead" in seen
        firsts = {d["camera_name"] for _, n, d in events if n == "sample"}
        assert firsts == {"front"}
        bodies.append(json.dumps([d for _, _, d in events]))

        # One-camera routes address the first camera.
        status = PipelineStatus.model_validate(c.get("/v1/status").json())
        assert status.source.uri == demo(1) and status.sample.camera_name == "front"
        assert c.get("/v1/snapshot.jpg").headers["content-type"] == "image/jpeg"
        jpeg = c.get("/v1/cameras/back/snapshot.jpg", params={"width": 80})
        assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
        no_frame = c.get("/v1/cameras/dead/snapshot.jpg")
        assert no_frame.status_code == 503 and "no frame yet from camera 'dead'" in no_frame.json()["detail"]
        bodies.append(no_frame.text)

        # Add, change, disable, remove: the others keep counting.
        front_before = listed["front"].sample.frames_total
        added = c.put("/v1/cameras/side", json={"source": demo(3)})
        assert added.status_code == 201, added.text
        wait_until(
            lambda: CameraStatus.model_validate(c.get("/v1/cameras/side").json()).sample.frames_total > 3
        )
        changed = c.put("/v1/cameras/side", json={"source": demo(4), "conf": 0.5})
        assert changed.status_code == 200 and changed.json()["source"]["uri"] == demo(4)
        assert changed.json()["conf"] == 0.5
        off = c.put("/v1/cameras/side", json={"enabled": False})
        assert off.json()["enabled"] is False and off.json()["state"] == "stopped"
        assert c.delete("/v1/cameras/side").status_code == 204
        assert c.get("/v1/cameras/side").status_code == 404
        assert c.delete("/v1/cameras/dead").status_code == 204
        after = {cam.name: cam for cam in cams().cameras}
        assert list(after) == ["front", "back"]
        assert after["front"].sample.frames_total > front_before

        # Each change was saved to config.toml: mode 0600, the rest of the file as the technician wrote it.
        saved = config.read_text()
        assert config.stat().st_mode & 0o777 == 0o600
        assert saved.startswith("# site: dock 4\n[models]\nkeep = 3  # small card\n")
        assert "# Trio for the dock\n[forwarding]\nenabled = false" in saved
        assert load_config(home=agent.home, env={}).camera_specs() == [
            CameraSpec("front", demo(1)),
            CameraSpec("back", demo(2)),
        ]
        c.put("/v1/cameras/side", json={"source": DEAD, "conf": 0.4, "enabled": False})
        assert SECRET in config.read_text()  # the file keeps the real URI (and only the file)
        assert c.delete("/v1/cameras/side").status_code == 204
        saved = config.read_text()

        # Bad input: one clear line, nothing changes.
        bad = c.put("/v1/cameras/Bad_Name", json={"source": demo(5)})
        assert bad.status_code == 422 and "use 1-32 characters" in bad.json()["detail"]
        new_without_source = c.put("/v1/cameras/nosrc", json={"enabled": True})
        assert (
            new_without_source.status_code == 422 and "give its source" in new_without_source.json()["detail"]
        )
        unopenable = c.put("/v1/cameras/back", json={"source": "/no/such/file.mp4"})
        assert unopenable.status_code == 422
        assert c.get("/v1/cameras/back").json()["source"]["uri"] == demo(2)
        assert config.read_text() == saved  # the file was put back as it was
        secret_put = c.put("/v1/cameras/back", json={"source": f"rtsp://u:{SECRET}@127.0.0.1:1/y"})
        bodies.append(secret_put.text)
        assert secret_put.status_code == 422
        assert c.delete("/v1/cameras/back").status_code == 204
        last = c.delete("/v1/cameras/front")
        assert last.status_code == 409 and "is the last one" in last.json()["detail"]
        assert [cam.name for cam in cams().cameras] == ["front"]
        # A change that failed or was refused saved nothing; the next start reads what runs now.
        restarted = load_config(home=agent.home, env={})
        assert restarted.camera_specs() == [CameraSpec("front", demo(1))]
        assert restarted.sections["models"] == {"keep": 3}
        bodies.append(c.get("/v1/logs").text)
        scrape = c.get("/metrics").text
        bodies.append(scrape)
        assert 'fieldtui_agent_frame_latency_seconds_count{camera="front"}' in scrape
        assert 'camera="dead"' not in scrape  # removed cameras leave no series behind
    _terminate(proc)
    logs = agent.stderr_path.read_text()
    assert "camera dead removed" in logs
    assert not any(SECRET in text for text in [*bodies, logs])


def test_duplicate_camera_names_stop_the_agent_before_it_starts(tmp_path, tiny_model):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(_config([("cam-1", demo(1)), ("cam-1", DEAD)]))
    args = [sys.executable, "-m", "agent", "serve", "--home", str(home), "--host", "127.0.0.1", "--port", "0"]
    done = subprocess.run(
        [*args, "--no-mdns", "--model", str(tiny_model)],
        capture_output=True,
        text=True,
        env=_clean_env(None),
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "camera 'cam-1'" in lines[0] and "key 'name' is used twice" in lines[0]
    assert SECRET not in done.stderr and "Traceback" not in done.stderr
    assert not (home / "agent.json").exists()


def test_one_camera_agent_lists_its_camera_and_refuses_a_second(agent_proc):
    with agent_proc.client() as c:
        wait_until(lambda: c.get("/v1/cameras/cam0").json()["sample"]["frames_total"] > 0)
        listed = CameraList.model_validate(c.get("/v1/cameras").json())
        assert [cam.name for cam in listed.cameras] == ["cam0"] and listed.cameras[
            0
        ].sample.camera_name == "cam0"
        refused = c.put("/v1/cameras/cam1", json={"source": demo(1)})
        assert refused.status_code == 409 and "[[cameras]] in config.toml" in refused.json()["detail"]
        assert c.delete("/v1/cameras/cam0").status_code == 409
        assert c.get("/v1/cameras/other").status_code == 404
