"""``fieldtui-agent cameras`` on a stopped device (from config.toml), and ``fieldtui cameras HOST`` over
HTTP and over SSH (the real SSH test server running the real agent CLI) against a real serving agent."""

from __future__ import annotations

from fieldtui.protocol import CameraList
from tests.test_cli_engines import agent_cli
from tests.test_ssh import console, device_home, ok_json, run, ssh_dir, ssh_server  # noqa: F401

SOURCE = "demo:?fps=10&size=160x120"


def test_agent_cli_lists_configured_cameras_with_no_agent_serving(capsys, tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(
        '[[cameras]]\nname = "gate"\nsource = "rtsp://admin:pw-s3cret@10.0.0.9/live"\n\n'
        '[[cameras]]\nname = "yard"\nsource = "demo:"\nenabled = false\nconf = 0.5\n'
    )
    code, out, err = agent_cli(capsys, "cameras", "--home", str(home), "--json")
    assert code == 0, err
    listing = CameraList.model_validate_json(out)
    assert [(c.name, c.enabled, c.state, c.conf) for c in listing.cameras] == [
        ("gate", True, "stopped", None),
        ("yard", False, "stopped", 0.5),
    ]
    assert listing.cameras[0].source.uri == "rtsp://***@10.0.0.9/live"
    code, out, err = agent_cli(capsys, "cameras", "--home", str(home))
    assert code == 0
    assert "gate" in out and "DOWN: no agent serving" in out and "disabled" in out
    assert out.strip().splitlines()[-1] == "2 cameras, 1 unhealthy"
    assert "pw-s3cret" not in out + err


def test_console_cameras_over_http_and_ssh(capsys, console, ssh_dir, start_agent, device_home):  # noqa: F811
    start_agent(device_home, model=None, source=SOURCE)
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")

    def live(*flags: str) -> CameraList:
        for _ in range(100):
            listing = CameraList.model_validate(ok_json(capsys, "cameras", "dock-1", *flags, "--json"))
            if listing.cameras[0].state == "running" and listing.cameras[0].sample.frames_total > 0:
                return listing
        raise AssertionError("the camera never ran")

    over_http, over_ssh = live(), live("--ssh")
    for listing in (over_http, over_ssh):
        assert [c.name for c in listing.cameras] == ["cam0"]
        assert listing.cameras[0].source.uri == SOURCE and listing.cameras[0].sample.camera_name == "cam0"
    code, out, err = run(capsys, "cameras", "dock-1")
    assert code == 0, err
    assert out.splitlines()[1].startswith("cam0") and out.strip().splitlines()[-1] == "1 camera"
