"""Staged rollouts driven by the console (push mode): a model to many devices, a few first.

- ``plan.py``    the plan and the state (pydantic): waves, criteria, each device's stage
- ``store.py``   one JSON file per rollout in the console's state dir, written after every step
- ``runner.py``  :class:`RolloutRunner`: the waves, the decision after each, the abort and its rollback
- ``device.py``  one device's push, activation, probation watch and rollback, through its link

The CLI (fieldtui/cli/rollout.py) and the TUI drive the same runner.
"""

from fieldtui.rollout.plan import (
    DeviceProgress,
    RolloutError,
    RolloutPlan,
    RolloutState,
    make_plan,
    max_failures,
    new_id,
    wave_sizes,
)
from fieldtui.rollout.runner import RolloutRunner
from fieldtui.rollout.store import RolloutStore, state_dir

__all__ = [
    "DeviceProgress",
    "RolloutError",
    "RolloutPlan",
    "RolloutRunner",
    "RolloutState",
    "RolloutStore",
    "make_plan",
    "max_failures",
    "new_id",
    "state_dir",
    "wave_sizes",
]
