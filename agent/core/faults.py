"""Fault points the crash tests arm: ``FIELDTUI_AGENT_FAULT=<point>[:<version>]`` kills the agent there.

The model store promises that a crash at any step of a push or an activation leaves the device serving
a complete, verified model after a restart. The only honest test of that is a real crash at each step,
so the store and the activation call :func:`fault_point` between their steps; with the variable unset
(always, outside tests) it is a dictionary lookup and nothing else.

Points: ``after_stage_write``, ``after_verify``, ``after_manifest``, ``before_rename``, ``after_rename``
(push); ``after_load``, ``after_health``, ``after_swap``, ``after_symlink``, ``in_probation`` (activate).
``:<version>`` limits the fault to that model version, so a test can set up v1 with the fault armed
for v2.
"""

from __future__ import annotations

import logging
import os
import signal

FAULT_ENV = "FIELDTUI_AGENT_FAULT"

PUSH_POINTS = ("after_stage_write", "after_verify", "after_manifest", "before_rename", "after_rename")
ACTIVATE_POINTS = ("after_load", "after_health", "after_swap", "after_symlink", "in_probation")

log = logging.getLogger("fieldtui.agent.faults")


def fault_point(name: str, version: str | None = None) -> None:
    """SIGKILL this process when the fault ``name`` is armed (for ``version``, if the spec names one)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, only = spec.partition(":")
    if point != name or (only and only != version):
        return
    log.warning("fault point %s reached for %s: killing the agent (%s is set)", name, version, FAULT_ENV)
    for handler in logging.getLogger().handlers:  # the line above should reach agent.log
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)
