"""A circuit breaker around a remote dependency (a payment provider, a search cluster).

After ``failure_threshold`` consecutive failures the circuit *opens*: calls fail at once
with :class:`DependencyUnavailable` instead of each waiting for a timeout, which keeps
workers free and answers clients quickly. After ``reset_after`` seconds one trial call
is let through (*half open*): success closes the circuit, failure opens it again.
Only errors the caller classifies as the dependency's fault count; a declined card or
bad input is an answer, not a failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter, Gauge

from common.errors import DependencyUnavailable

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
#: The gauge's values: alerts fire on ``bookstore_circuit_breaker_state == 2``.
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

BREAKER_STATE = Gauge(
    "bookstore_circuit_breaker_state",
    "A circuit breaker's state: 0 closed, 1 half open (a trial call may pass), "
    "2 open (calls fail at once).",
    ["breaker"],
)
BREAKER_OPENED = Counter(
    "bookstore_circuit_breaker_opened_total",
    "Times a circuit breaker opened (its dependency failed repeatedly).",
    ["breaker"],
)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        # Read at scrape time: half open is a matter of time passing, not of a call.
        BREAKER_STATE.labels(name).set_function(lambda: STATE_VALUES[self.state])
        BREAKER_OPENED.labels(name)

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self.reset_after:
            return HALF_OPEN
        return OPEN

    def call(self, function: Callable[[], T], *, is_failure: Callable[[BaseException], bool]) -> T:
        """Runs ``function`` unless the circuit is open; ``is_failure`` says which of its
        exceptions are the dependency's fault (and count towards opening)."""
        with self._lock:
            state = self._state()
            if state == OPEN or (state == HALF_OPEN and self._trial_running):
                raise DependencyUnavailable(
                    f"{self.name} is unavailable (it failed repeatedly); try again shortly.",
                    {"dependency": self.name, "circuit": OPEN},
                )
            if state == HALF_OPEN:
                self._trial_running = True
        try:
            result = function()
        except BaseException as error:
            with self._lock:
                self._trial_running = False
                if is_failure(error):
                    self._failures += 1
                    if state == HALF_OPEN or self._failures >= self.failure_threshold:
                        if self._opened_at is None or state == HALF_OPEN:
                            BREAKER_OPENED.labels(self.name).inc()
                        self._opened_at = self._clock()
            raise
        with self._lock:
            self._trial_running = False
            self._failures = 0
            self._opened_at = None
        return result
