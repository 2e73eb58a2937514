"""The gateway's settings, read once from the environment (common/config.py: typed, a bad
value stops the gateway before it serves)."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import Field, field_validator

from common.config import SERVICE_PACKAGES, SharedSettings, TokenSettings

#: Where the versioned API lives (the spec's only server).
API_BASE_PATH = "/api/v1"


class Settings(SharedSettings, TokenSettings, env_prefix="GATEWAY_", populate_by_name=True):
    host: str = Field("127.0.0.1", description="the address the gateway listens on")
    port: int = Field(8080, gt=0, le=65535, description="its port")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        gt=0,
        description="server processes; each keeps its own AMQP connection, key and read caches",
        json_schema_extra={"default_text": "the number of cores"},
    )
    read_cache: bool = Field(
        True,
        description=(
            "public catalog reads answered from each worker's memory, kept current by events "
            "(docs/decisions/0071)"
        ),
    )
    cache_ttl: float = Field(
        5.0, gt=0, description="seconds an entry lives if no event drops it (staleness bound)"
    )
    cache_max_entries: int = Field(20_000, gt=0, description="read cache entries per worker")
    cache_max_bytes: int = Field(64 * 1024 * 1024, gt=0, description="read cache bytes per worker")
    rpc_timeout: float = Field(
        5.0, gt=0, description="seconds an RPC call may take before the client gets a 504"
    )
    ready_timeout: float = Field(
        2.0, gt=0, description="seconds each service has to answer the readiness ping"
    )
    jwks_refresh_interval: float = Field(
        300.0,
        gt=0,
        validation_alias="GATEWAY_JWKS_REFRESH",
        description="seconds between JWKS refreshes (an unknown key id triggers one sooner)",
    )
    revocation_poll_interval: float = Field(
        1.0,
        gt=0,
        validation_alias="GATEWAY_REVOCATION_POLL",
        description=(
            "seconds between polls of auth for revoked access tokens (logout, suspension, "
            "new password or roles)"
        ),
    )
    max_body_bytes: int = Field(1024 * 1024, gt=0, description="larger bodies are 413")
    validate_responses: bool = Field(
        False, description="check every response against the spec (on in tests; costly)"
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for rate limiting, shared by every gateway (empty: no rate limiting)",
    )
    rate_limits: str = Field(
        "default=100/1s,credentials=20/60s",
        description="requests per window per caller, per route group (gateway/ratelimit.py)",
    )
    rate_limit_prefix: str = Field(
        "bookstore:ratelimit:", description="prefix of the gateway's Redis keys"
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="proxies whose `X-Forwarded-For` is believed (comma-separated, or `*`)",
    )
    services: ClassVar[tuple[str, ...]] = tuple(SERVICE_PACKAGES)

    @field_validator("rate_limits")
    @classmethod
    def _limits_parse(cls, value: str) -> str:
        from gateway.ratelimit import parse_limits  # it needs API_BASE_PATH, from here

        parse_limits(value)
        return value
