"""Put the FAKE vendor SDKs in tests/fakes (tensorrt, cuda, hailo_platform) on the path for one test.

``monkeypatch.syspath_prepend`` undoes the path change, but modules imported meanwhile stay in
``sys.modules``; :func:`fake_sdks` forgets them on the way in (fresh module knobs) and on the way out,
so no later test sees a fake SDK. Use it inside a fixture::

    @pytest.fixture
    def trt(monkeypatch):
        with fake_sdks(monkeypatch):
            yield importlib.import_module("tensorrt")
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parent / "fakes"
FAKE_ROOTS = ("tensorrt", "cuda", "hailo_platform")


def _forget() -> None:
    for name in list(sys.modules):
        if name.split(".", 1)[0] in FAKE_ROOTS:
            del sys.modules[name]


@contextmanager
def fake_sdks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _forget()
    monkeypatch.syspath_prepend(str(FAKES))
    try:
        yield
    finally:
        _forget()
