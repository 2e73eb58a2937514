"""The circuit breaker as plain Python, with a hand-driven clock."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from common.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from common.errors import DependencyUnavailable, InvalidInput

OPENED = "bookstore_circuit_breaker_opened_total"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise TimeoutError("no answer")


def is_failure(error: BaseException) -> bool:
    return isinstance(error, TimeoutError)


def test_opens_after_consecutive_failures_and_fails_fast():
    clock = Clock()
    breaker = CircuitBreaker("provider", failure_threshold=3, reset_after=10, clock=clock)
    for _ in range(3):
        with pytest.raises(TimeoutError):
            breaker.call(failing, is_failure=is_failure)
    assert breaker.state == OPEN
    calls = []
    with pytest.raises(DependencyUnavailable):
        breaker.call(lambda: calls.append(1), is_failure=is_failure)
    assert calls == [], "an open circuit does not call"


def test_answers_that_are_not_failures_do_not_count():
    breaker = CircuitBreaker("provider", failure_threshold=2)

    def declined() -> None:
        raise InvalidInput("bad card")

    for _ in range(5):
        with pytest.raises(InvalidInput):
            breaker.call(declined, is_failure=is_failure)
    assert breaker.state == CLOSED


def test_a_success_resets_the_count():
    breaker = CircuitBreaker("provider", failure_threshold=2)
    with pytest.raises(TimeoutError):
        breaker.call(failing, is_failure=is_failure)
    assert breaker.call(lambda: "ok", is_failure=is_failure) == "ok"
    with pytest.raises(TimeoutError):
        breaker.call(failing, is_failure=is_failure)
    assert breaker.state == CLOSED


def test_half_open_lets_one_trial_through():
    clock = Clock()
    breaker = CircuitBreaker("provider", failure_threshold=1, reset_after=10, clock=clock)
    with pytest.raises(TimeoutError):
        breaker.call(failing, is_failure=is_failure)
    clock.now = 11
    assert breaker.state == HALF_OPEN
    with pytest.raises(TimeoutError):
        breaker.call(failing, is_failure=is_failure)
    assert breaker.state == OPEN, "a failed trial opens it again"
    clock.now = 22
    assert breaker.call(lambda: "back", is_failure=is_failure) == "back"
    assert breaker.state == CLOSED


def test_the_breaker_opens_after_failures_and_lets_one_trial_through_later():
    now = [0.0]
    breaker = CircuitBreaker(
        "elasticsearch", failure_threshold=3, reset_after=30, clock=lambda: now[0]
    )
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure(ConnectionError("refused"))
    assert breaker.state == CLOSED
    assert breaker.allow()
    breaker.record_failure(ConnectionError("refused"))
    assert breaker.state == OPEN and not breaker.allow()
    now[0] = 31
    assert breaker.state == HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record_failure(TimeoutError("slow"))
    assert breaker.state == OPEN and breaker.status()["last_error"] == "TimeoutError: slow"
    now[0] = 62
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.status()["consecutive_failures"] == 0


def test_the_state_and_openings_are_metrics():
    clock = Clock()
    breaker = CircuitBreaker("metrics test", failure_threshold=2, reset_after=10, clock=clock)

    def sample(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"breaker": "metrics test"})

    assert (sample("bookstore_circuit_breaker_state"), sample(OPENED)) == (0, 0)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            breaker.call(failing, is_failure=is_failure)
    assert (sample("bookstore_circuit_breaker_state"), sample(OPENED)) == (2, 1)
    clock.now += 10
    assert sample("bookstore_circuit_breaker_state") == 1  # half open: time alone did it
    with pytest.raises(TimeoutError):
        breaker.call(failing, is_failure=is_failure)  # the trial fails: open again
    assert (sample("bookstore_circuit_breaker_state"), sample(OPENED)) == (2, 2)
