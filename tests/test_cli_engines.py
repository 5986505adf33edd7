"""``fieldtui-agent engines`` on a stopped device, and ``fieldtui engines|rebuild HOST`` over HTTP and over
SSH (the real SSH test server running the real agent CLI) against a real serving agent."""

from __future__ import annotations

import logging

from agent.cli.main import main as agent_main
from agent.engines.store import engine_key
from agent.inference.detector import demo_model_path, file_sha256
from fieldtui.protocol import EngineList, EngineRebuildResult, ModelList
from tests.test_ssh import console, device_home, fail_line, ok_json, run, ssh_dir, ssh_server  # noqa: F401

DEMO_SHA = file_sha256(demo_model_path())
SOURCE = "demo:?fps=20&size=320x240"


def agent_cli(capsys, *args: str) -> tuple[int, str, str]:
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        code = agent_main(list(args))
    finally:  # main's basicConfig handler writes to this test's captured stderr: not beyond it
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_agent_cli_builds_lists_and_activates_with_no_agent_serving(capsys, tmp_path):
    home = str(tmp_path / "home")
    code, out, err = agent_cli(capsys, "engines", "list", "--home", home, "--json")
    assert code == 0, err
    empty = EngineList.model_validate_json(out)
    assert empty.engines == [] and {r.runtime for r in empty.runtimes} >= {"onnxruntime", "hailo"}

    code, out, err = agent_cli(
        capsys, "engines", "rebuild", "--home", home, "--frames", "4", "--accuracy-frames", "4", "--json"
    )
    assert code == 0, err
    result = EngineRebuildResult.model_validate_json(out)
    assert result.engine.key == engine_key("onnxruntime", "int8", DEMO_SHA)
    assert result.calibration_frames == 4 and result.size < result.source_size
    assert any("demo scene" in line for line in result.log)  # no live source: it says where frames came from

    code, out, err = agent_cli(capsys, "engines", "list", "--home", home)
    assert code == 0, err
    assert result.engine.key in out and "ok" in out and "cannot build: HEFs are compiled off-device" in out

    code, out, err = agent_cli(
        capsys, "engines", "rebuild", "--home", home, "--precision", "fp32", "--accuracy-frames", "2",
        "--activate", "--json",
    )  # fmt: skip
    assert code == 0, err
    activated = EngineRebuildResult.model_validate_json(out)
    code, out, err = agent_cli(capsys, "models", "list", "--home", home, "--json")
    assert ModelList.model_validate_json(out).current == activated.model_version
    assert activated.engine.model_version == activated.model_version


def test_agent_cli_refusals_are_one_line_and_build_nothing(capsys, tmp_path):
    home = tmp_path / "home"
    for args, words in (
        (("--backend", "hailo"), "compiled off-device with Hailo's Dataflow Compiler"),
        (("--calibration-dir", str(tmp_path / "nope")), "frames folder not found"),
        (("--version", "v9"), "no model version 'v9'"),
        (("--frames", "0"), "bad rebuild option calibration_frames"),
    ):
        code, out, err = agent_cli(capsys, "engines", "rebuild", "--home", str(home), *args)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, err
        assert lines[0].startswith("fieldtui-agent: ") and words in lines[0], lines[0]
    assert not (home / "engines").exists() or [p.name for p in (home / "engines").iterdir()] in (
        [],
        [".staging"],
    )


def test_console_engines_and_rebuild_over_http_and_ssh(
    capsys,
    console,  # noqa: F811
    ssh_dir,  # noqa: F811
    start_agent,
    device_home,  # noqa: F811
):
    agent = start_agent(device_home, model=None, source=SOURCE)
    ok_json(capsys, "pair", "dock-1", "--accept-new", "--json")

    # over SSH: the agent CLI on the device goes through the serving agent (live frames, its job)
    flags = ("--frames", "4", "--accuracy-frames", "4")
    built = EngineRebuildResult.model_validate(
        ok_json(capsys, "rebuild", "dock-1", "--ssh", *flags, "--json")
    )
    assert built.engine.key == engine_key("onnxruntime", "int8", DEMO_SHA)
    assert any("from the live source" in line for line in built.log)
    listed = EngineList.model_validate(ok_json(capsys, "engines", "dock-1", "--ssh", "--json"))
    assert [e.key for e in listed.engines] == [built.engine.key]

    # over HTTP: the same list; a rebuild with activation, progress on stderr
    assert EngineList.model_validate(ok_json(capsys, "engines", "dock-1", "--json")) == listed
    code, out, err = run(
        capsys, "rebuild", "dock-1", "--precision", "fp32", "--accuracy-frames", "2", "--activate"
    )
    assert code == 0, err
    assert "built onnxruntime-fp32-" in out and "and activated" in out
    assert "%" in err  # the progress line
    with agent.client() as http:
        status = http.get("/v1/status").json()
        assert status["model"]["version"].startswith("model-onnxruntime-fp32-")
    code, out, err = run(capsys, "engines", "dock-1")
    assert code == 0 and "onnxruntime-fp32-" in out and "(model model-onnxruntime-fp32-" in out

    line = fail_line(capsys, "rebuild", "dock-1", "--backend", "hailo")
    assert "compiled off-device" in line
