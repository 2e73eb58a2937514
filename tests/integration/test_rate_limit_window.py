"""The gateway's rate limit counter against the real Redis: a sliding window."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis

from gateway.ratelimit import Limit, RateLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"


def limiter(requests: int, window_seconds: int) -> RateLimiter:
    return RateLimiter(
        REDIS_URL, {"default": Limit(requests, window_seconds)}, f"test:{uuid.uuid4().hex}:"
    )


def hits(rate_limiter: RateLimiter, count: int, caller: str = "ip:192.0.2.1") -> list:
    async def run() -> list:
        try:
            return [await rate_limiter.hit("default", caller) for _ in range(count)]
        finally:
            await rate_limiter.close()

    return asyncio.run(run())


def redis_ms() -> int:
    seconds, micros = redis.Redis.from_url(REDIS_URL).time()
    return seconds * 1000 + micros // 1000


def at_window_offset(window_ms: int, offset_ms: int) -> None:
    """Waits until Redis' clock (the one the counter reads) is ``offset_ms`` into a window.
    A deliberate wait: what is tested is where in the window the requests fall."""
    now = redis_ms()
    target = now - now % window_ms + offset_ms
    if target <= now + 20:
        target += window_ms
    time.sleep((target - now) / 1000)


def test_remaining_counts_down_and_the_request_over_the_limit_is_refused():
    rate_limiter = limiter(5, 60)
    decisions = hits(rate_limiter, 6)
    assert [decision.allowed for decision in decisions] == [True] * 5 + [False]
    assert [decision.remaining for decision in decisions] == [4, 3, 2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.headers()["Retry-After"] == str(refused.reset_seconds)
    assert 1 <= refused.reset_seconds <= 120


def test_a_burst_across_a_window_boundary_does_not_get_twice_the_limit():
    # A fixed window let 10 requests through at the end of one window and 10 more at the
    # start of the next. The sliding window still counts the first 10 after the boundary.
    rate_limiter = limiter(10, 1)
    at_window_offset(1000, 850)
    before = hits(rate_limiter, 10)
    at_window_offset(1000, 50)
    after = hits(rate_limiter, 5)
    assert all(decision.allowed for decision in before)
    assert not any(decision.allowed for decision in after)


def test_refused_requests_are_not_counted():
    rate_limiter = limiter(3, 60)
    caller = f"user:{uuid.uuid4()}"
    assert [decision.allowed for decision in hits(rate_limiter, 10, caller)] == [True] * 3 + [
        False
    ] * 7
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{rate_limiter._prefix}*")
    counts = [int(redis.Redis.from_url(REDIS_URL).get(key)) for key in keys]
    assert counts == [3]


def test_callers_are_counted_apart():
    rate_limiter = limiter(1, 60)
    assert hits(rate_limiter, 1, "ip:192.0.2.1")[0].allowed
    assert hits(rate_limiter, 1, "ip:192.0.2.2")[0].allowed
    assert not hits(rate_limiter, 1, "ip:192.0.2.1")[0].allowed


def test_without_redis_the_limiter_answers_none_and_lets_requests_through():
    rate_limiter = RateLimiter(
        "redis://127.0.0.1:1/0", {"default": Limit(1, 1)}, f"test:{uuid.uuid4().hex}:"
    )
    assert hits(rate_limiter, 1) == [None]
