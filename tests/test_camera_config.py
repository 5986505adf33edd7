"""Cameras in the agent config: ``[[cameras]]`` tables, ``--source``/``--camera`` as the one-camera form."""

from __future__ import annotations

import pytest

from agent.core.cameras import CameraSpec
from agent.core.config import ConfigError, load_config

GOOD = """
[[cameras]]
name = "dock-north"
source = "rtsp://admin:hunter2@10.0.0.21/stream1"
conf = 0.4

[[cameras]]
name = "cam-2"
source = "demo:?seed=2"
enabled = false
"""


def _load(tmp_path, text, **overrides):
    (tmp_path / "config.toml").write_text(text)
    return load_config(home=tmp_path, env={}, overrides=overrides)


def test_cameras_table_gives_every_camera(tmp_path):
    cfg = _load(tmp_path, GOOD)
    assert cfg.camera_specs() == [
        CameraSpec("dock-north", "rtsp://admin:hunter2@10.0.0.21/stream1", conf=0.4, enabled=True),
        CameraSpec("cam-2", "demo:?seed=2", conf=None, enabled=False),
    ]


def test_source_is_the_one_camera_shorthand(tmp_path):
    cfg = _load(tmp_path, "")
    assert cfg.camera_specs() == [CameraSpec("cam0", "demo:")]
    cfg = _load(tmp_path, GOOD, source="demo:?seed=9", camera="yard")
    assert cfg.camera_specs() == [CameraSpec("yard", "demo:?seed=9")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + '\n[[cameras]]\nname = "cam-2"\nsource = "demo:"\n',
            "camera 'cam-2' in .*: key 'name' is used twice",
        ),
        ('[[cameras]]\nname = "Dock_1"\nsource = "demo:"\n', "camera name 'Dock_1' in .* is not valid"),
        ('[[cameras]]\nname = "' + "a" * 33 + '"\nsource = "demo:"\n', "is not valid: use 1-32 characters"),
        ('[[cameras]]\nsource = "demo:"\n', "camera #1 in .* has no name"),
        ('[[cameras]]\nname = "a"\n', "camera 'a' in .*: key 'source' must be"),
        ('[[cameras]]\nname = "a"\nsource = "demo:"\nconf = 1.5\n', "camera 'a' in .*: key 'conf' must be"),
        ('[[cameras]]\nname = "a"\nsource = "demo:"\nconf = true\n', "camera 'a' in .*: key 'conf' must be"),
        (
            '[[cameras]]\nname = "a"\nsource = "demo:"\nenabled = "no"\n',
            "camera 'a' in .*: key 'enabled' must be",
        ),
        ('[[cameras]]\nname = "a"\nsource = "demo:"\nfps = 3\n', "camera 'a' in .*: unknown key 'fps'"),
        ("cameras = []\n", "cameras in .* is empty"),
        ('cameras = "demo:"\n', "cameras in .* must be a list of tables"),
        ('source = "demo:"\n' + GOOD, "sets both source/camera and \\[\\[cameras\\]\\]"),
    ],
)
def test_a_bad_entry_is_one_line_naming_camera_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message
    assert "hunter2" not in message


def test_bad_camera_flag_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="camera name 'Yard!' in --camera is not valid"):
        _load(tmp_path, "", camera="Yard!")


def test_saving_cameras_rewrites_only_the_cameras(tmp_path):
    from agent.core.config_write import save_cameras, save_source

    path = tmp_path / "config.toml"
    path.write_text(
        '# dock 4\nname = "dock"\n\n[[cameras]]\nname = "a"\nsource = "demo:"\n# old comment\n'
        "conf = 0.3\n\n# keep me\n[models]\nkeep = 3\n"
    )
    path.chmod(0o644)
    save_cameras(path, [CameraSpec("a", "demo:"), CameraSpec("b", 'rtsp://u:p"w\\@h/x', 0.5, False)])
    text = path.read_text()
    assert text.startswith('# dock 4\nname = "dock"\n\n# keep me\n[models]\nkeep = 3\n')
    assert path.stat().st_mode & 0o777 == 0o600
    cfg = load_config(home=tmp_path, env={})
    assert cfg.camera_specs() == [CameraSpec("a", "demo:"), CameraSpec("b", 'rtsp://u:p"w\\@h/x', 0.5, False)]
    assert cfg.name == "dock" and cfg.sections == {"models": {"keep": 3}}

    one = tmp_path / "one.toml"
    one.write_text("port = 9000\n\n[models]\nkeep = 2\n")
    save_source(one, "rtsp://cam/1")
    assert one.read_text() == 'port = 9000\n\nsource = "rtsp://cam/1"\n[models]\nkeep = 2\n'
    save_source(one, "rtsp://cam/2")
    assert load_config(home=tmp_path, config_file=one, env={}).source == "rtsp://cam/2"


def test_a_layout_the_writer_cannot_edit_is_left_alone(tmp_path):
    from agent.core.config_write import ConfigWriteError, save_cameras

    path = tmp_path / "config.toml"
    before = '[[cameras]]\nname = "a"\nsource = "demo:"\n\n[notes]\ntext = """\n[[cameras]]\n"""\n'
    path.write_text(before)
    with pytest.raises(ConfigWriteError, match="edit \\[\\[cameras\\]\\] in the file by hand"):
        save_cameras(path, [CameraSpec("b", "demo:")])
    assert path.read_text() == before
