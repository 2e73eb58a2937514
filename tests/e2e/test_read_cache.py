"""The read cache against the real services: another gateway process (``cached``, one
worker, read cache on) caches; the suite's gateway, or the database behind everyone's
back, changes things. What the cache drops, and when, is what these tests pin down.

The suite's own gateway runs without the read cache (tests/harness.py): its tests reset
the databases between tests, which no event announces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import pytest
import requests
from sqlalchemy import text

from ops.processes import wait_until_ready
from tests.harness import amqp_uri
from tests.support import add_image, assert_problem, eventually, picture
from tests.tcp_proxy import TcpProxy


class Gateway:
    def __init__(self, base_url: str) -> None:
        self.api = f"{base_url}/api/v1"
        self.http = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(f"{self.api}{path}", timeout=30, **kwargs)

    def version(self, product_id: str) -> int:
        response = self.get(f"/products/{product_id}")
        assert response.status_code == 200, response.text
        return response.json()["version"]


@contextmanager
def cached_gateway(platform, broker_port: int = 5672, ttl: float = 60) -> Iterator[Gateway]:
    vhost = platform.amqp_uri.rsplit("/", 1)[1]
    process, base_url = platform.start_gateway(
        amqp_uri(unquote(vhost), port=broker_port),
        GATEWAY_READ_CACHE="1",
        GATEWAY_CACHE_TTL=str(ttl),
        GATEWAY_WORKERS="1",
    )
    try:
        # Generous: on a loaded 2-core machine a gateway's startup took over a minute.
        wait_until_ready(base_url, [process], timeout=180)
        yield Gateway(base_url)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cached(platform) -> Iterator[Gateway]:
    """One caching gateway for the module: tests read products of their own (new ids),
    and the one list read asks the service first (``no-cache``), so what an earlier
    test left in the cache cannot answer a later one."""
    with cached_gateway(platform) as gateway:
        yield gateway


def set_title_behind_the_gateways_back(api, product_id: str, title: str) -> None:
    """A change no event announces (a lost event, as far as the gateways can tell)."""
    with api.platform.engine("catalog").begin() as connection:
        connection.execute(
            text("UPDATE products SET title = :title, version = version + 1 WHERE id = :id"),
            {"title": title, "id": product_id},
        )


def test_an_update_elsewhere_reaches_the_cache_by_event(api, cached):
    product = api.create_product()
    assert cached.version(product["id"]) == 1
    patched = api.patch(
        f"/products/{product['id']}",
        json={"title": "A new title"},
        token=api.admin,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text

    def new_version_served() -> None:
        answer = cached.get(f"/products/{product['id']}").json()
        assert (answer["version"], answer["title"]) == (2, "A new title")

    eventually(new_version_served)


def test_an_image_added_elsewhere_reaches_the_cache_by_event(api, cached):
    product = api.create_product()
    assert cached.get(f"/products/{product['id']}").json()["images"] == []
    added = add_image(api, product["id"], picture())

    def image_served() -> None:
        answer = cached.get(f"/products/{product['id']}").json()
        assert answer["version"] == added["version"]
        assert [image["id"] for image in answer["images"]] == [added["images"][0]["id"]]

    eventually(image_served)


def test_a_deleted_product_disappears_from_the_cache(api, cached):
    product = api.create_product()
    assert cached.version(product["id"]) == 1
    assert api.delete(f"/products/{product['id']}", token=api.admin).status_code == 204
    eventually(lambda: assert_problem(cached.get(f"/products/{product['id']}"), 404))


def test_a_new_product_appears_in_cached_lists(api, cached):
    first = api.create_product(title="Aaaa first")
    assert [item["id"] for item in cached.get("/products?limit=5").json()["items"]] == [first["id"]]
    second = api.create_product(title="Aaab second")

    def listed() -> None:
        items = cached.get("/products?limit=5").json()["items"]
        assert [item["id"] for item in items] == [first["id"], second["id"]]

    eventually(listed)


def test_a_stock_change_reaches_cached_availability(api, cached):
    product = api.create_product()
    assert cached.get(f"/products/{product['id']}/availability").json()["available"] == 0
    stocked = api.request(
        "PUT", f"/products/{product['id']}/stock", json={"on_hand": 7}, token=api.admin
    )
    assert stocked.status_code == 200, stocked.text

    def available() -> None:
        assert cached.get(f"/products/{product['id']}/availability").json()["available"] == 7

    eventually(available)


def test_a_client_reads_its_own_writes(api, cached):
    product = api.create_product()
    assert cached.version(product["id"]) == 1
    patched = cached.http.patch(
        f"{cached.api}/products/{product['id']}",
        json={"title": "Mine"},
        headers={
            "Authorization": f"Bearer {api.admin}",
            "Content-Type": "application/merge-patch+json",
        },
        timeout=30,
    )
    assert patched.status_code == 200, patched.text
    # At once, through the same gateway: no waiting for the event.
    assert cached.get(f"/products/{product['id']}").json()["title"] == "Mine"


def test_if_none_match_gets_304_with_the_etag(api, cached):
    product = api.create_product()
    first = cached.get(f"/products/{product['id']}")
    assert first.headers["ETag"] == '"1"'
    again = cached.get(f"/products/{product['id']}", headers={"If-None-Match": '"1"'})
    assert again.status_code == 304
    assert again.headers["ETag"] == '"1"'
    assert again.headers["Cache-Control"] == "public, no-cache"


def test_the_ttl_bounds_staleness_when_an_event_is_lost(api):
    product = api.create_product()
    with cached_gateway(api.platform, ttl=1) as gateway:
        assert gateway.version(product["id"]) == 1
        set_title_behind_the_gateways_back(api, product["id"], "Changed quietly")

        def expired() -> None:
            assert gateway.version(product["id"]) == 2

        eventually(expired, 10)


def test_a_lost_subscription_empties_the_cache_when_it_comes_back(api):
    product = api.create_product()
    proxy = TcpProxy(5672)
    try:
        # A TTL far longer than the test: only a fresh subscription can drop the entry.
        with cached_gateway(api.platform, broker_port=proxy.port, ttl=600) as gateway:
            assert gateway.version(product["id"]) == 1
            proxy.cut()
            # Cached public reads are still served; what needs the catalog fails fast.
            assert gateway.version(product["id"]) == 1
            refused = gateway.get(
                f"/products/{product['id']}", headers={"Cache-Control": "no-cache"}
            )
            assert_problem(refused, 503)
            # Changed while the gateway cannot hear about it.
            set_title_behind_the_gateways_back(api, product["id"], "Changed while away")
            proxy.restore()

            def fresh() -> None:
                answer = gateway.get(f"/products/{product['id']}")
                assert answer.status_code == 200, answer.text
                assert answer.json()["title"] == "Changed while away"

            eventually(fresh, 30)
    finally:
        proxy.close()
