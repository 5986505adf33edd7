"""Exponential backoff with jitter: the one rule for every reconnect (a camera's capture thread on the
agent, the console's event stream and its dashboard).

A small function rather than a retry library (``stamina``, ``tenacity``): these loops are not "call until
it works" - the capture thread waits on an event it can be woken from, and a stream that delivered
events starts again at the first step - so they only need the delay of the n-th consecutive retry.
"""

from __future__ import annotations

import random

INITIAL_S = 0.5
MAXIMUM_S = 10.0


def backoff_delay(
    attempt: int, initial: float = INITIAL_S, maximum: float = MAXIMUM_S, jitter: float = 0.2
) -> float:
    """Seconds to wait before retry ``attempt`` (0: the first after a success): ``initial`` doubling up to
    ``maximum``, times 1 ± ``jitter`` so that a fleet of agents or consoles does not retry in step (0: the
    exact figure, for a view that counts the wait down)."""
    delay = min(maximum, initial * 2 ** min(attempt, 32))
    return delay * random.uniform(1 - jitter, 1 + jitter) if jitter else delay
