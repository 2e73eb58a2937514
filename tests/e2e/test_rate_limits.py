"""Rate limiting on gateways of their own (low limits, their own Redis keys): 429 with
Retry-After, RateLimit-* headers, limits shared by two gateway processes, per user and
per address, and what happens when Redis goes away."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from ops.processes import wait_until_ready
from tests.harness import amqp_uri
from tests.support import assert_problem
from tests.tcp_proxy import TcpProxy

LIMITS = "default=5/30s,credentials=3/60s"


@contextmanager
def gateways(api, count: int = 1, **env: str) -> Iterator[list[str]]:
    prefix = f"test-rate-{uuid.uuid4().hex}:"
    settings = {"GATEWAY_RATE_LIMITS": LIMITS, "GATEWAY_RATE_LIMIT_PREFIX": prefix, **env}
    started = [api.platform.start_gateway(amqp_uri(), **settings) for _ in range(count)]
    try:
        for process, base_url in started:
            wait_until_ready(base_url, [process], timeout=30)
        yield [f"{base_url}/api/v1" for _, base_url in started]
    finally:
        for process, _ in started:
            process.stop()


def get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, timeout=10, **kwargs)


def test_a_burst_gets_429_with_retry_after_and_ratelimit_headers(api):
    with gateways(api) as (base,):
        responses = [get(f"{base}/products") for _ in range(6)]
    assert [response.status_code for response in responses] == [200] * 5 + [429]
    first = responses[0].headers
    assert first["RateLimit-Limit"] == "5"
    assert first["RateLimit-Remaining"] == "4"
    assert 1 <= int(first["RateLimit-Reset"]) <= 30
    assert first["RateLimit-Policy"] == "5;w=30"
    assert [response.headers["RateLimit-Remaining"] for response in responses[1:5]] == [
        "3",
        "2",
        "1",
        "0",
    ]
    refused = responses[5]
    body = assert_problem(refused, 429)
    assert body["type"].endswith("rate-limited")
    # On a sliding window the earliest admission can lie past the current window's end
    # (the full count still overlaps it): never more than two windows away.
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_the_limit_is_shared_by_every_gateway_process(api):
    with gateways(api, count=2) as (first, second):
        statuses = [get(f"{base}/products").status_code for base in [first, second] * 3]
    assert statuses == [200] * 5 + [429]


def test_users_are_limited_separately_and_routes_by_group(api):
    _, alice = api.platform.new_customer()
    _, bob = api.platform.new_customer()
    with gateways(api) as (base,):
        alice_statuses = [
            get(f"{base}/me", headers={"Authorization": f"Bearer {alice}"}).status_code
            for _ in range(6)
        ]
        # Bob shares alice's address but not her budget: tokens are counted per user.
        bob_status = get(f"{base}/me", headers={"Authorization": f"Bearer {bob}"}).status_code
        # Credentials routes have a budget of their own (3 a minute per address).
        logins = [
            requests.post(
                f"{base}/auth/login",
                json={"email": "x@example.com", "password": "guess"},
                timeout=10,
            ).status_code
            for _ in range(4)
        ]
    assert alice_statuses == [200] * 5 + [429]
    assert bob_status == 200
    assert logins == [401, 401, 401, 429]


def test_forged_tokens_do_not_spend_someone_elses_budget(api):
    _, token = api.platform.new_customer()
    # The victim's own header and claims (their `sub`), with a signature that is not the
    # issuer's: if the limiter believed unverified claims, this would spend their budget.
    header, claims, _ = token.split(".")
    forged = f"{header}.{claims}.{'A' * 43}"
    with gateways(api) as (base,):
        forged_statuses = [
            get(f"{base}/me", headers={"Authorization": f"Bearer {forged}"}).status_code
            for _ in range(6)
        ]
        victim = get(
            f"{base}/me",
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "198.51.100.1"},
        )
    # Counted against the sender's address: refused with 401, then limited with 429.
    assert forged_statuses == [401] * 5 + [429]
    assert victim.status_code == 200
    assert victim.headers["RateLimit-Remaining"] == "4"  # the victim's budget is whole


def test_without_redis_requests_are_served_unlimited(api):
    proxy = TcpProxy(6379)
    try:
        with gateways(api, GATEWAY_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0") as (base,):
            assert get(f"{base}/products").headers["RateLimit-Limit"] == "5"
            proxy.cut()
            statuses = [get(f"{base}/products").status_code for _ in range(8)]
            assert statuses == [200] * 8
            assert "RateLimit-Limit" not in get(f"{base}/products").headers
    finally:
        proxy.close()
