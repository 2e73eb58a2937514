"""How long to wait before trying again: one formula for every retry loop.

Exponential growth from ``base`` doubling per attempt, capped at ``cap``, with a jitter
that keeps many callers which failed together (every relay when the broker restarts, every
bridge when EventBridge throttles) from all coming back at the same moment:

- ``"full"``: anywhere from 0 to the bound (AWS' "full jitter"): the widest spread, for
  loops where an early retry costs nothing (reconnecting).
- ``"equal"``: at least half the bound, and a random rest: delays still grow, for schedules
  a person reads (a webhook's next attempt).
- ``"none"``: the bound itself, for tests and single callers.

Retry libraries (tenacity, stamina) wrap a call and sleep for it; our loops keep their
own state (a stored schedule, a relay's failure count) and need only the number, which is
this function (docs/decisions/0100).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

Jitter = Literal["full", "equal", "none"]


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: Jitter = "full",
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``attempt``-th failure (1 for the first)."""
    bound = min(cap, base * 2 ** min(max(attempt, 1) - 1, 32))
    if jitter == "full":
        return rand() * bound
    if jitter == "equal":
        return bound / 2 + rand() * bound / 2
    return bound
