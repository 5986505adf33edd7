"""Every ``fieldtui`` and ``fieldtui-agent`` subcommand, run with hostile arguments: each either takes
the value (it was acceptable after all) or ends with one clear line (argparse's, or the command's own)
and a non-zero status - never a traceback.

The subcommands and their arguments are read from the parsers themselves, so a new command is covered
the day it is added. Hosts point at 127.0.0.1:9 (nothing listens) or are refused before any lookup;
commands that would run for long (discover, demo, serve, run, bench, registry serve) only get values
argparse must refuse."""

from __future__ import annotations

import argparse
import traceback

import pytest

from agent.cli.main import build_parser as agent_parser
from agent.cli.main import main as agent_main
from fieldtui.cli.main import build_parser as console_parser
from fieldtui.cli.main import main as console_main

HOSTILE_TEXT = [
    "💥;rm -rf /",
    "http://[::1",
    "[::1",
    "a b",
    "$(reboot)",
    "../../../etc/passwd",
    "x" * 300,
    "http://user:hunter2@[::1",
    "-",
]
HOSTILE_NUMBERS = ["-1", "0", "nan", "inf", "-inf", "1e309", "99999999999999999999", "abc", "99"]
REFUSED_NUMBERS = ["-1", "nan", "inf", "1e309", "abc"]  # refused by every numeric flag, whatever its range
LONG_RUNNING = {("discover",), ("demo",), ("registry", "serve"), ("run",), ("serve",), ("bench",)}
SAFE = {  # a harmless value for a positional while a flag is the hostile part
    "host": "127.0.0.1:9",
    "file": "/nonexistent/model.onnx",
    "version": "v1",
    "dir": "/nonexistent/models",
    "images": "/nonexistent/image.jpg",
}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(subcommand path, positional names, numeric flags) for every leaf subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))
            return
    positional = [a.dest for a in parser._actions if not a.option_strings]
    numeric = [a.option_strings[-1] for a in parser._actions if a.option_strings and a.type is not None]
    yield path, positional, numeric


def cases(parser: argparse.ArgumentParser, agent: bool) -> list[list[str]]:
    out: list[list[str]] = []
    for path, positional, numeric in walk(parser):
        long = path in LONG_RUNNING or (agent and path == ("engines", "rebuild"))
        if agent and path[0] == "bench":
            long = True
        if positional and not long:
            for text in HOSTILE_TEXT:
                out.append([*path, *[text] * len(positional)])
        for flag in numeric:
            for number in REFUSED_NUMBERS if long else HOSTILE_NUMBERS:
                out.append([*path, *[SAFE.get(p, "v1") for p in positional], f"{flag}={number}"])
    return out


CONSOLE = cases(console_parser(), agent=False)
AGENT = cases(agent_parser(), agent=True)


def _run(main, argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: usage and one error line
        code = exit_.code if isinstance(exit_.code, int) else 2
    except BaseException:  # noqa: BLE001 - the very thing this test exists to catch
        pytest.fail(f"{argv!r} raised:\n{traceback.format_exc()}")
    return code, capsys.readouterr().err


def _one_clear_line(err: str, prog: str) -> bool:
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return last.startswith((f"{prog}: ", f"{prog} ")) and "Traceback" not in err


def test_the_cases_cover_every_subcommand():
    covered = {
        tuple(c[: len(p)]) for c in CONSOLE for p, _, _ in walk(console_parser()) if c[: len(p)] == list(p)
    }
    assert covered == {p for p, pos, num in walk(console_parser()) if pos or num}
    assert len(CONSOLE) > 150 and len(AGENT) > 50


def test_every_console_subcommand_answers_hostile_arguments_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDTUI_CONFIG_DIR", str(tmp_path / "console"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/config or known_hosts of the machine's
    monkeypatch.chdir(tmp_path)
    bad = []
    for argv in CONSOLE:
        code, err = _run(console_main, argv, capsys)
        if "Traceback" in err or (code != 0 and not _one_clear_line(err, "fieldtui")):
            bad.append((argv, code, err[-400:]))
        if "hunter2" in err:  # planted in a URL argument: echoed back, it must be redacted
            bad.append((argv, code, "the planted password is in the output: " + err[-400:]))
    assert not bad, "\n\n".join(f"{a!r} -> {c}: {e}" for a, c, e in bad[:10])


def test_every_agent_subcommand_answers_hostile_arguments_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDTUI_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    bad = []
    for argv in AGENT:
        code, err = _run(agent_main, argv, capsys)
        if "Traceback" in err or (code != 0 and not _one_clear_line(err, "fieldtui-agent")):
            bad.append((argv, code, err[-400:]))
    assert not bad, "\n\n".join(f"{a!r} -> {c}: {e}" for a, c, e in bad[:10])
