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
from typing import Any, TypeVar

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
    """One breaker per dependency per process (instances find out for themselves; they
    share nothing but the dependency). Two ways to use it: :meth:`call` wraps a call and
    raises :class:`DependencyUnavailable` while open (payments); :meth:`allow` with
    :meth:`record_success` / :meth:`record_failure` lets a caller answer another way
    while open (search falls back to PostgreSQL)."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = max(1, failure_threshold)
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self.last_error: str | None = None
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

    def allow(self) -> bool:
        """Whether to call the dependency now; while half open only one caller is let
        through (the trial), and it must report back with ``record_*``."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return True
            if state == HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False
            self.last_error = None

    def record_failure(self, error: BaseException) -> None:
        with self._lock:
            self._failures += 1
            self.last_error = f"{type(error).__name__}: {error}"[:300]
            if self._trial_running or self._failures >= self.failure_threshold:
                if self._opened_at is None or self._trial_running:
                    BREAKER_OPENED.labels(self.name).inc()  # closed -> open, or a failed trial
                self._opened_at = self._clock()
            self._trial_running = False

    def record_answer(self) -> None:
        """The dependency answered with an error that is not its fault (a declined card):
        it is up, but a half-open trial is over without proving anything more."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self._state(),
                "consecutive_failures": self._failures,
                "last_error": self.last_error,
            }

    def call(self, function: Callable[[], T], *, is_failure: Callable[[BaseException], bool]) -> T:
        """Runs ``function`` unless the circuit is open; ``is_failure`` says which of its
        exceptions are the dependency's fault (and count towards opening)."""
        if not self.allow():
            raise DependencyUnavailable(
                f"{self.name} is unavailable (it failed repeatedly); try again shortly.",
                {"dependency": self.name, "circuit": OPEN},
            )
        try:
            result = function()
        except BaseException as error:
            if is_failure(error):
                self.record_failure(error)
            else:
                self.record_answer()
            raise
        self.record_success()
        return result
