"""The console's side of Trio forwarding settings, shared by ``fieldtui trio`` and the Trio screen: reading a
rules file and a key file, and how the key is shown.

The key is write-only: it is read from a file (or stdin) and sent in ``PUT /v1/forwarding``; nothing here
ever prints, logs or keeps it. What the console shows of it is only whether one is set, and from where.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import ValidationError

from fieldtui.errors import ConsoleError
from fieldtui.protocol import ForwardingRules, first_error

KEY_FILE_MAX = 4096  # a Trio key is a few dozen characters; anything larger is the wrong file
RULES_FILE_MAX = 64 * 1024


def read_key_file(name: str) -> str:
    """The API key in the file ``name`` (``-``: the first line of stdin), stripped. Errors never quote it."""
    try:
        text = sys.stdin.readline(KEY_FILE_MAX + 1) if name == "-" else _read(Path(name), KEY_FILE_MAX)
    except UnicodeDecodeError:
        raise ConsoleError(f"--key-file {name}: not a text file; put the key alone on one line") from None
    key = text.strip()
    if not key:
        raise ConsoleError(f"--key-file {name} is empty: put the key Trio issued alone on one line")
    if len(text) > KEY_FILE_MAX or len(key.split()) > 1:
        raise ConsoleError(f"--key-file {name}: expected the key alone on one line; nothing was sent")
    return key


def read_rules(name: str) -> ForwardingRules:
    """ForwardingRules from a JSON file (``fieldtui trio HOST --json`` prints them under "rules"); one line
    saying what is wrong."""
    try:
        doc = json.loads(_read(Path(name), RULES_FILE_MAX))
    except (UnicodeDecodeError, ValueError) as err:
        where = f" (line {err.lineno})" if isinstance(err, json.JSONDecodeError) else ""
        raise ConsoleError(
            f"--rules {name}: not valid JSON{where}; e.g. "
            '{"classes": ["person"], "min_confidence": 0.6, "cooldown_s": 30}'
        ) from None
    if not isinstance(doc, dict):
        raise ConsoleError(f'--rules {name}: expected an object of rules, e.g. {{"classes": ["person"]}}')
    unknown = sorted(set(doc) - set(ForwardingRules.model_fields))
    if unknown:  # a misspelt rule would otherwise be dropped without a word
        raise ConsoleError(
            f"--rules {name}: unknown rule {unknown[0][:40]!r}; the rules are "
            f"{', '.join(ForwardingRules.model_fields)}"
        )
    try:
        return ForwardingRules.model_validate(doc)
    except ValidationError as err:
        raise ConsoleError(f"--rules {name}: {first_error(err)}; nothing was sent") from None


def _read(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ConsoleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConsoleError(f"{path} is a folder; give a file") from None
    except OSError as err:
        raise ConsoleError(f"cannot read {path}: {err.strerror}") from None
    if len(data) > limit:
        raise ConsoleError(f"{path} is larger than {limit // 1024} KB; is it the right file?")
    return data.decode()


def key_state(masked: str) -> str:
    """What the console shows of the key: "set" or "not set", with where it comes from — never any of its
    characters (the agent's masked form may carry a few)."""
    if not masked or masked.startswith("not set"):
        return masked or "not set"
    source = masked[masked.rfind("(") :] if masked.endswith(")") and "(" in masked else ""
    return f"set {source}".strip()
