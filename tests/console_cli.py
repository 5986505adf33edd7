"""Run the console's command line in-process and read what it printed (shared by the CLI tests)."""

from __future__ import annotations

import json

from fieldtui.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``fieldtui ARGS``; a traceback on stderr is a failure."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def ok_json(capsys, *args: str) -> dict:
    """The JSON document a successful ``fieldtui ARGS --json`` printed."""
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return json.loads(out)


def fail_line(capsys, *args: str) -> str:
    """The one line a refused ``fieldtui ARGS`` ends with (exit status 2)."""
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    return err.strip().splitlines()[-1]
