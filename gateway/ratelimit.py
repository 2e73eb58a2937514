"""Rate limiting shared by every gateway process, in Redis.

Each request is counted against its caller: the user of a valid bearer token, otherwise
the client address. Limits are per route group: an operation names its group with
``x-rate-limit-group`` in the OpenAPI file (``credentials`` for login, register,
password reset...), everything else is ``default``. Settings:
``GATEWAY_RATE_LIMITS="default=100/1s,credentials=20/60s"``.

The counter is a sliding window per caller and group (docs/decisions/0101): this
window's count plus the previous window's, weighted by how much of it still overlaps the
last ``window`` seconds. A fixed window admitted up to twice the limit across a window
boundary; this one admits about the limit over any window. One Lua script on Redis' own
clock (``TIME``: every gateway process agrees, whatever its host's clock says), one round
trip per request; a refused request is not counted. If Redis is unreachable the
gateway lets requests through (and logs it): limiting protects the shop, it must not be
the thing that takes it down.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.schemas import spec_document
from gateway import problems, security
from gateway.problems import HTTP_METHODS

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"
#: After Redis fails, skip it for this long instead of paying a timeout on every request.
REDIS_RETRY_SECONDS = 5.0
_LIMIT = re.compile(r"^\s*([a-z][a-z0-9_-]*)\s*=\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}

# KEYS[1] = the caller's key prefix; ARGV[1] = window in ms, ARGV[2] = requests allowed.
# Returns {allowed (0/1), remaining, milliseconds until a request would be admitted
# (refused) or until this window ends (admitted)}.
_HIT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local start = now - (now % window)
local elapsed = now - start
local current_key = KEYS[1] .. ':' .. start
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (start - window)) or '0')
local current = tonumber(redis.call('GET', current_key) or '0')
local overlap = (window - elapsed) / window
if previous * overlap + current + 1 > limit then
  local wait
  if current + 1 > limit then
    wait = (window - elapsed) + math.max(0, window * (1 - (limit - 1) / current))
  else
    wait = (window - elapsed) - window * (limit - 1 - current) / previous
  end
  return {0, 0, math.max(1, math.ceil(wait))}
end
current = redis.call('INCR', current_key)
redis.call('PEXPIRE', current_key, window * 2)
local remaining = math.floor(limit - (previous * overlap + current))
return {1, math.max(0, remaining), window - elapsed}
"""


@dataclass(frozen=True)
class Limit:
    requests: int
    window_seconds: int

    @property
    def policy(self) -> str:
        return f"{self.requests};w={self.window_seconds}"


def parse_limits(text: str) -> dict[str, Limit]:
    """``"default=100/1s,credentials=20/60s"`` -> {group: Limit}; ``default`` is required."""
    limits = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = _LIMIT.match(part)
        if not match:
            raise ValueError(f"rate limit {part!r}: expected group=requests/window, e.g. 100/1s")
        group, requests, count, unit = match.groups()
        window = int(count or 1) * _UNIT_SECONDS[unit]
        if int(requests) < 1 or window < 1:
            raise ValueError(f"rate limit {part!r}: requests and window must be positive")
        limits[group] = Limit(int(requests), window)
    if DEFAULT_GROUP not in limits:
        raise ValueError("rate limits must include the 'default' group")
    return limits


@functools.cache
def route_groups() -> dict[str, str]:
    """operationId -> rate limit group, from the spec's ``x-rate-limit-group``."""
    groups = {}
    for item in spec_document()["paths"].values():
        for method, operation in item.items():
            if method in HTTP_METHODS and "x-rate-limit-group" in operation:
                groups[operation["operationId"]] = operation["x-rate-limit-group"]
    return groups


@dataclass(frozen=True)
class Decision:
    limit: Limit
    allowed: bool
    #: Requests left in the sliding window (0 when refused).
    remaining: int
    #: Refused: seconds until a request would be admitted. Admitted: until this window ends.
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit.requests),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": self.limit.policy,
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimited(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__("rate limited")
        self.decision = decision


class RateLimiter:
    """Counts hits in Redis; ``None`` from :meth:`hit` means "could not count"."""

    def __init__(self, redis_url: str, limits: dict[str, Limit], prefix: str) -> None:
        self.limits = limits
        self._redis_url = redis_url
        self._prefix = prefix
        self._client: aioredis.Redis | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._script: Any = None
        self._skip_until = 0.0

    def limit_for(self, group: str) -> Limit:
        return self.limits.get(group, self.limits[DEFAULT_GROUP])

    async def hit(self, group: str, caller: str) -> Decision | None:
        if time.monotonic() < self._skip_until:
            return None
        limit = self.limit_for(group)
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # A client belongs to the event loop it was made on (one per server process;
            # test clients may run several loops in turn).
            self._client_loop = loop
            self._client = aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=0.25, socket_timeout=0.25
            )
            self._script = self._client.register_script(_HIT_SCRIPT)
        try:
            allowed, remaining, wait_ms = await self._script(
                keys=[f"{self._prefix}{group}:{caller}"],
                args=[limit.window_seconds * 1000, limit.requests],
            )
        except (RedisError, OSError) as error:
            self._skip_until = time.monotonic() + REDIS_RETRY_SECONDS
            log.warning(
                "rate limiting is off for %.0fs: Redis failed: %r", REDIS_RETRY_SECONDS, error
            )
            return None
        return Decision(
            limit, bool(allowed), int(remaining), max(1, math.ceil(int(wait_ms) / 1000))
        )

    async def close(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None


def _caller(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and (subject := security.token_subject(token.strip())):
                return f"user:{subject}"
            break
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    """Counts every API operation against its caller; 429 beyond the limit. Sits after
    routing (it needs the operation) and before security (a flood of bad tokens is
    limited too, by address)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation_id = (
            scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
            if scope["type"] == "http"
            else None
        )
        if operation_id is None:
            await self.app(scope, receive, send)
            return
        group = route_groups().get(operation_id, DEFAULT_GROUP)
        decision = await self.limiter.hit(group, _caller(scope))
        if decision is None:
            await self.app(scope, receive, send)
            return
        if not decision.allowed:
            raise RateLimited(decision)
        extra = [(name.encode(), value.encode()) for name, value in decision.headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def rate_limited_problem(request: Any, error: RateLimited) -> Any:
    decision = error.decision
    return problems.problem(
        request,
        429,
        f"Too many requests: the limit is {decision.limit.requests} per "
        f"{decision.limit.window_seconds}s. Retry after {decision.reset_seconds}s.",
        problem_type=problems.RATE_LIMITED,
        headers=decision.headers(),
    )
