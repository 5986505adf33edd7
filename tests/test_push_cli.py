"""``fieldtui push | rollback | models`` against a real agent on 127.0.0.1: the console hashes first,
asks what the device has, streams the file with progress, and activates; every refusal is one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fieldtui.cli.main import main
from fieldtui.config import ConsoleConfig
from fieldtui.protocol import DeviceRecord, ModelList, PushResult
from fieldtui.push import file_chunks
from tests import storemodels as sm
from tests.storeclient import listing, wait_for


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "console"
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def device(inproc_agent, tmp_path, console):
    """An in-process agent saved in the console's config as ``dock-1``."""
    home = tmp_path / "device-home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("[models]\nprobation_s = 0\nmax_upload_mb = 1\n")
    agent = inproc_agent(home, source="demo:?fps=20&size=160x120")
    port = int(agent.url.rsplit(":", 1)[1])
    ConsoleConfig(console).save_device(DeviceRecord(name="dock-1", host="127.0.0.1", port=port), agent.token)
    return agent


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return sm.make(tmp_path / "files", "v1", "v2", "nan")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("fieldtui: ") and "Traceback" not in err
    return lines[-1]


def test_push_with_progress_then_activate(device, files, capsys):
    code, out, err = run(capsys, "push", "dock-1", str(files["v1"]), "--version", "v1", "--activate")
    assert code == 0, err
    assert out.splitlines()[0].startswith("stored v1  0.0 MB  sha256 " + sm.sha256(files["v1"])[:12])
    assert out.splitlines()[1] == "v1 serves now"
    lines = err.splitlines()
    assert lines[0].startswith("hashing   100%") and any(line.startswith("uploading 100%") for line in lines)
    assert "uploaded; the device is checking the model" in lines
    assert lines[-1].startswith("activating: ")  # the stages it was seen at (a tiny model is quick)
    with device.client() as c:
        models = listing(c)
        assert models.serving.version == "v1" and models.current == "v1"
        assert models.versions[0].manifest.source == "upload from 127.0.0.1"


def test_push_skips_what_the_device_has_and_refuses_what_it_cannot_take(device, files, capsys, tmp_path):
    assert run(capsys, "push", "dock-1", str(files["v1"]), "--version", "v1", "--quiet")[0] == 0
    code, out, err = run(capsys, "push", "dock-1", str(files["v1"]), "--version", "v1", "--json", "--quiet")
    assert code == 0 and err == ""
    result = PushResult.model_validate_json(out)
    assert not result.uploaded and result.version.version == "v1" and result.activation is None

    line = one_line_error(capsys, "push", "dock-1", str(files["v2"]), "--version", "v1")
    assert "version v1 is already on the device with other bytes" in line and "new version name" in line
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\x08\x07" + b"\0" * (2 << 20))
    line = one_line_error(capsys, "push", "dock-1", str(big), "--version", "big")
    assert "over the device's limit of 1 MB" in line and "nothing was sent" in line
    line = one_line_error(capsys, "push", "dock-1", str(files["v1"]), "--version", "../v1")
    assert "version name '../v1' is not allowed" in line
    line = one_line_error(capsys, "push", "dock-1", str(tmp_path / "missing.onnx"), "--version", "v9")
    assert line == f"fieldtui: model file not found: {tmp_path / 'missing.onnx'}"
    with device.client() as c:  # one upload reached the device, no more
        assert [(h.action, h.version) for h in listing(c).history] == [("upload", "v1")]


def test_a_failed_activation_is_one_line_and_the_old_model_serves(device, files, capsys):
    assert run(capsys, "push", "dock-1", str(files["v1"]), "--version", "v1", "--activate", "--quiet")[0] == 0
    line = one_line_error(
        capsys, "push", "dock-1", str(files["nan"]), "--version", "nan", "--activate", "--quiet"
    )
    assert line.startswith("fieldtui: activation of nan failed: nan gives NaN values on live frames")
    assert line.endswith("v1 keeps serving")
    with device.client() as c:
        assert c.get("/v1/status").json()["model"]["version"] == "v1"


def test_models_and_rollback(device, files, capsys):
    for version in ("v1", "v2"):
        path = str(files[version])
        assert run(capsys, "push", "dock-1", path, "--version", version, "--activate", "--quiet")[0] == 0
    code, out, _ = run(capsys, "models", "dock-1", "--json")
    models = ModelList.model_validate_json(out)
    assert code == 0 and models.serving.version == "v2" and models.last_good == "v1"
    code, out, _ = run(capsys, "rollback", "dock-1")
    assert code == 0 and out.strip() == "rolled back to v1 (was v2)"
    code, out, _ = run(capsys, "models", "dock-1")
    lines = out.splitlines()
    assert lines[0] == "serving   v1"
    assert lines[1].split() == [
        "VERSION",
        "STATE",
        "VERDICT",
        "CURRENT",
        "SIZE",
        "SHA256",
        "LAYOUT",
        "CREATED",
        "SOURCE",
    ]
    assert any(line.split()[:4] == ["v1", "serving", "passed", "*"] for line in lines)
    assert any(line.endswith("rollback v1: good - rollback requested") for line in lines)
    assert any(line.endswith("activate v2: rolled_back - rollback requested") for line in lines)


def test_an_unpaired_device_says_how_to_pair(console, capsys):
    line = one_line_error(capsys, "models", "127.0.0.1:9")
    assert "no token is saved for http://127.0.0.1:9" in line and "fieldtui pair 127.0.0.1" in line


def test_the_body_is_read_in_chunks_of_at_most_a_megabyte(tmp_path):
    path = tmp_path / "blob.onnx"
    path.write_bytes(bytes(range(256)) * (10 * 1024 + 3))  # 2.5 MB and a bit

    async def chunks() -> list[int]:
        return [len(c) async for c in file_chunks(path, path.stat().st_size)]

    sizes = asyncio.run(chunks())
    assert max(sizes) == 1 << 20 and sum(sizes) == path.stat().st_size


def test_pushing_the_same_bytes_twice_at_once_stores_them_once(device, files, capsys):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        codes = list(
            pool.map(
                lambda _: main(["push", "dock-1", str(files["v2"]), "--version", "v2", "--quiet"]), range(2)
            )
        )
    assert codes == [0, 0]
    with device.client() as c:
        models = wait_for(lambda: listing(c))
        assert [v.version for v in models.versions] == ["v2"]


def test_a_known_bad_model_needs_force_and_the_refusal_names_why(device, files, capsys):
    code, _, err = run(capsys, "push", "dock-1", str(files["nan"]), "--version", "nan", "--quiet")
    assert code == 0, err
    line = one_line_error(capsys, "activate", "dock-1", "nan")
    assert line.startswith("fieldtui: activation of nan failed: nan gives NaN values on live frames")
    line = one_line_error(capsys, "activate", "dock-1", "nan")  # refused before anything is tried
    assert "nan failed before: nan gives NaN values" in line and "--force" in line
    line = one_line_error(capsys, "activate", "dock-1", "nan", "--force")  # tried again, on purpose
    assert line.startswith("fieldtui: activation of nan failed: nan gives NaN values")
    # the same bytes under another name: refused, naming the earlier failure, unless forced
    line = one_line_error(capsys, "push", "dock-1", str(files["nan"]), "--version", "nan2", "--quiet")
    assert "same sha256" in line and "as nan, which failed: nan gives NaN values" in line
    code, out, err = run(
        capsys, "push", "dock-1", str(files["nan"]), "--version", "nan2", "--quiet", "--force"
    )
    assert code == 0 and out.startswith("stored nan2"), err
    with device.client() as c:
        outcomes = [h.outcome for h in listing(c).history if h.action == "activate"]
    assert outcomes == ["failed", "failed"]  # the refused try left nothing to record
