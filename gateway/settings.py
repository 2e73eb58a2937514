"""The gateway's settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from common.config import SERVICE_PACKAGES, env_bool, env_float, env_int, env_str

#: Where the versioned API lives (the spec's only server).
API_BASE_PATH = "/api/v1"


@dataclass(frozen=True)
class Settings:
    amqp_uri: str = field(
        default_factory=lambda: env_str("AMQP_URI", "pyamqp://guest:guest@127.0.0.1:5672//")
    )
    #: Seconds an RPC call may take before the client gets a 504.
    rpc_timeout: float = field(default_factory=lambda: env_float("GATEWAY_RPC_TIMEOUT", 5.0))
    #: Seconds each service has to answer the readiness ping.
    ready_timeout: float = field(default_factory=lambda: env_float("GATEWAY_READY_TIMEOUT", 2.0))
    #: Seconds between JWKS refreshes (a token with an unknown key id triggers one sooner).
    jwks_refresh_interval: float = field(
        default_factory=lambda: env_float("GATEWAY_JWKS_REFRESH", 300.0)
    )
    #: Seconds between polls of auth for revoked access tokens: how long a logout,
    #: suspension or role change may take to reach this gateway.
    revocation_poll_interval: float = field(
        default_factory=lambda: env_float("GATEWAY_REVOCATION_POLL", 1.0)
    )
    #: Check every response against the spec; on in tests, off in production (cost).
    validate_responses: bool = field(
        default_factory=lambda: env_bool("GATEWAY_VALIDATE_RESPONSES", False)
    )
    host: str = field(default_factory=lambda: env_str("GATEWAY_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: env_int("GATEWAY_PORT", 8080))
    #: Larger request bodies are refused with 413 (the largest book is a few dozen KB).
    max_body_bytes: int = field(
        default_factory=lambda: env_int("GATEWAY_MAX_BODY_BYTES", 1024 * 1024)
    )
    #: Server processes (default: one per core); each keeps its own AMQP connection,
    #: key cache and read cache.
    workers: int = field(default_factory=lambda: env_int("GATEWAY_WORKERS", os.cpu_count() or 1))
    #: Proxies whose X-Forwarded-For is believed (comma-separated addresses, or "*").
    forwarded_allow_ips: str = field(
        default_factory=lambda: env_str("GATEWAY_FORWARDED_ALLOW_IPS", "127.0.0.1")
    )
    #: Redis for rate limiting, shared by every gateway process; empty turns limiting off.
    redis_url: str = field(
        default_factory=lambda: env_str("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    #: Requests per window per caller, per route group (see gateway/ratelimit.py).
    rate_limits: str = field(
        default_factory=lambda: env_str("GATEWAY_RATE_LIMITS", "default=100/1s,credentials=20/60s")
    )
    #: Prefix of the gateway's Redis keys (several deployments can share one Redis).
    rate_limit_prefix: str = field(
        default_factory=lambda: env_str("GATEWAY_RATE_LIMIT_PREFIX", "bookstore:ratelimit:")
    )
    #: Public catalog reads answered from each worker's memory (gateway/read_cache.py).
    read_cache: bool = field(default_factory=lambda: env_bool("GATEWAY_READ_CACHE", True))
    #: Seconds an entry lives if no event drops it first: the staleness bound when an
    #: event is lost.
    cache_ttl: float = field(default_factory=lambda: env_float("GATEWAY_CACHE_TTL", 5.0))
    cache_max_entries: int = field(
        default_factory=lambda: env_int("GATEWAY_CACHE_MAX_ENTRIES", 20_000)
    )
    cache_max_bytes: int = field(
        default_factory=lambda: env_int("GATEWAY_CACHE_MAX_BYTES", 64 * 1024 * 1024)
    )
    services: tuple[str, ...] = tuple(SERVICE_PACKAGES)
