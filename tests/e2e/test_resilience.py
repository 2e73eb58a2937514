"""A service or the broker going away mid-flow: fast, precise problems, nothing
half-written, and recovery once it is back."""

from __future__ import annotations

import time

import pytest
import requests

from common.rpc import CLOCK_SKEW_ALLOWANCE_SECONDS
from ops.processes import wait_until_ready
from tests.harness import amqp_uri
from tests.support import assert_problem, book, eventually, frozen, wait_until_quiet
from tests.tcp_proxy import TcpProxy

#: Leeway on an answer that must come at a deadline: scheduling on a loaded 2-core machine.
DEADLINE_MARGIN = 3.0


def rpc_deadline(api) -> float:
    """The gateway's RPC deadline in the test platform (tests/harness.py)."""
    return float(api.platform.env["GATEWAY_RPC_TIMEOUT"])


@pytest.fixture
def gateway_behind_proxy(api):
    """A second gateway whose only route to RabbitMQ is a proxy the test can cut."""
    proxy = TcpProxy(5672)
    process, base_url = api.platform.start_gateway(amqp_uri(port=proxy.port))
    try:
        wait_until_ready(base_url, [process], timeout=30)
        yield proxy, base_url
    finally:
        process.stop()
        proxy.close()


def test_broker_gone_fails_fast_with_503_and_recovers(api, gateway_behind_proxy):
    proxy, base_url = gateway_behind_proxy
    assert requests.get(f"{base_url}/api/v1/products", timeout=10).status_code == 200

    proxy.cut()
    # The first page just read is in the read cache, which serves it for up to its TTL;
    # what must go to the catalog fails fast.
    started = time.monotonic()
    listing = requests.get(
        f"{base_url}/api/v1/products", headers={"Cache-Control": "no-cache"}, timeout=30
    )
    elapsed = time.monotonic() - started
    body = assert_problem(listing, 503)
    assert body["type"] == "urn:bookstore:problem:service-unavailable"
    assert listing.headers["Retry-After"]
    # The behaviour under test is a deadline: a broker that is gone is noticed, not
    # waited for, so the answer comes before the RPC deadline (a 504 would come at it).
    assert elapsed < rpc_deadline(api), f"took {elapsed:.1f}s to give up"

    ready = requests.get(f"{base_url}/ready", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "unreachable"

    # Tokens are checked locally, so this reaches the RPC and fails there: nothing written.
    write = requests.post(
        f"{base_url}/api/v1/products",
        json=book(),
        timeout=30,
        headers={"Authorization": f"Bearer {api.admin}"},
    )
    assert_problem(write, 503)
    assert api.all_products() == []

    proxy.restore()

    def recovered():
        assert requests.get(f"{base_url}/api/v1/products", timeout=10).status_code == 200
        assert requests.get(f"{base_url}/ready", timeout=10).status_code == 200

    eventually(recovered)


def test_hung_service_gives_504_and_its_request_is_never_run(api):
    catalog = api.platform.processes["catalog"]
    with frozen(catalog):
        started = time.monotonic()
        response = api.post("/products", json=book(), token=api.admin)
        elapsed = time.monotonic() - started
        body = assert_problem(response, 504)
        assert body["service"] == "catalog"
        # The behaviour under test is the deadline: the answer comes at it, give or take
        # DEADLINE_MARGIN for a loaded machine's scheduling.
        assert rpc_deadline(api) <= elapsed < rpc_deadline(api) + DEADLINE_MARGIN
        # It stays hung until its request is stale by more than the clock skew services
        # allow (common/rpc.py): making time pass is the point here, not synchronisation.
        time.sleep(CLOCK_SKEW_ALLOWANCE_SECONDS + 0.5)
    # It wakes with the request in hand (or still queued). Once the catalog's RPC queue is
    # quiet every request it held has been dropped or run (a request is acknowledged
    # after its work), so the product's absence now is a fact, not a matter of timing.
    wait_until_quiet(api.platform, "rpc-catalog")
    assert api.all_products() == []
    assert api.get("/products").status_code == 200


def test_stopped_service_shows_in_readiness_and_comes_back(api):
    catalog = api.platform.processes["catalog"]
    catalog.stop()
    try:
        ready = api.get(f"{api.platform.base_url}/ready")
        body = assert_problem(ready, 503)
        assert body["type"] == "urn:bookstore:problem:not-ready"
        assert "catalog" in body["detail"]
        checks = body["checks"]
        assert checks["auth"] == "ok"
        assert checks["catalog"] != "ok"
        assert_problem(api.get("/products"), 504)
    finally:
        catalog.start()
    wait_until_ready(api.platform.base_url, list(api.platform.processes.values()), timeout=30)
    assert api.get("/products").status_code == 200


def test_tokens_verify_without_the_auth_service(api):
    token = api.admin
    with frozen(api.platform.processes["auth"]):
        assert api.post("/products", json=book(), token=token).status_code == 201
        assert_problem(api.get("/me", token=token), 504)
