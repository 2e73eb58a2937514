"""A circuit breaker for the Elasticsearch backend.

Closed: every request goes to Elasticsearch. ``failures`` consecutive failures open it:
for ``reset_seconds`` nothing is sent and callers answer from PostgreSQL at once instead
of waiting out a timeout per request. Then it is half-open: one request is let through;
success closes it, failure opens it again for another period. One breaker per service
process (each instance finds out for itself; they share nothing but the cluster).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 3,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, failures)
        self.reset_seconds = reset_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self.clock() - self._opened_at >= self.reset_seconds:
            return HALF_OPEN
        return OPEN

    def allow(self) -> bool:
        """Whether to try Elasticsearch now (in half-open state, only one caller is)."""
        with self._lock:
            state = self.state
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
            if self._trial_running or self._failures >= self.threshold:
                self._opened_at = self.clock()
            self._trial_running = False

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "last_error": self.last_error,
        }
