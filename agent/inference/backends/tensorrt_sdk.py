"""The TensorRT SDK as the agent uses it: importing it (or saying what to install), its logger, and the
error lines a call leaves behind. Shared by the runtime (tensorrt.py) and the builder (tensorrt_build.py);
``tensorrt`` itself is imported inside :func:`import_trt`, never at module top."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agent.core.errors import BackendUnavailable
from agent.inference.backends.probes import probe_tensorrt

log = logging.getLogger("fieldtui.agent.backends.tensorrt")


def import_trt() -> Any:
    """The ``tensorrt`` module; BackendUnavailable with what to install when it is missing."""
    ok, reason, _ = probe_tensorrt()
    if not ok:
        raise BackendUnavailable(reason)
    import tensorrt

    return tensorrt


# TensorRT keeps the first logger it is given for process-wide messages, so the agent gives it one
# logger per tensorrt module and routes each call's messages to whoever is listening meanwhile.
_LOGGERS: dict[int, tuple[Any, Any]] = {}
_LOGGERS_LOCK = threading.Lock()


def trt_logger(trt: Any) -> Any:
    """The agent's ``trt.ILogger`` for this tensorrt module: errors and warnings to the agent's log and
    to the sinks of :func:`captured`; info and verbose messages dropped."""
    with _LOGGERS_LOCK:
        entry = _LOGGERS.get(id(trt))
        if entry is None or entry[0] is not trt:
            entry = (trt, _make_logger(trt))
            _LOGGERS[id(trt)] = entry
        return entry[1]


def _make_logger(trt: Any) -> Any:
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)

    class AgentTrtLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.sinks: list[Callable[[str], None]] = []
            self.recent_errors: deque[str] = deque(maxlen=8)

        def log(self, sev: Any, msg: str) -> None:  # called from TensorRT's threads
            if sev in errors:
                self.recent_errors.append(msg)
                log.error("TensorRT: %s", msg)
                line = f"TensorRT error: {msg}"
            elif sev == severity.WARNING:
                log.warning("TensorRT: %s", msg)
                line = f"TensorRT warning: {msg}"
            else:
                return
            for sink in list(self.sinks):
                try:
                    sink(line)
                except Exception:  # a sink must never raise into TensorRT
                    log.exception("TensorRT log sink failed")

    return AgentTrtLogger()


@contextmanager
def captured(logger: Any, also: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """Collect the logger's error and warning lines while the block runs (and pass them to ``also``)."""
    lines: list[str] = []

    def sink(line: str) -> None:
        lines.append(line)
        if also is not None:
            also(line)

    logger.sinks.append(sink)
    try:
        yield lines
    finally:
        logger.sinks.remove(sink)


def last_error(lines: list[str]) -> str:
    """The last error line TensorRT logged (else the last warning), shortened for one message line."""
    errors = [line for line in lines if line.startswith("TensorRT error: ")]
    text = (errors or lines or ["no reason logged"])[-1].removeprefix("TensorRT error: ")
    return text if len(text) <= 240 else text[:237] + "..."
