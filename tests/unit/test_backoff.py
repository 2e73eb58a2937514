"""The one backoff formula every retry loop uses."""

import pytest

from common.backoff import backoff_delay


def test_the_bound_doubles_from_base_and_stops_at_the_cap():
    bounds = [backoff_delay(n, base=0.5, cap=30, jitter="none") for n in range(1, 10)]
    assert bounds == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_full_jitter_spreads_from_zero_and_equal_jitter_keeps_half():
    assert backoff_delay(3, base=1, cap=60, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, base=1, cap=60, rand=lambda: 1.0) == 4.0
    assert backoff_delay(3, base=1, cap=60, jitter="equal", rand=lambda: 0.0) == 2.0
    assert backoff_delay(3, base=1, cap=60, jitter="equal", rand=lambda: 1.0) == 4.0


@pytest.mark.parametrize("attempt", [0, -3, 10_000])
def test_odd_attempt_numbers_stay_within_base_and_cap(attempt):
    assert 0.25 <= backoff_delay(attempt, base=0.25, cap=8, jitter="none") <= 8
