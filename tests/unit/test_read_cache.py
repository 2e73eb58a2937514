"""The read cache (gateway/read_cache.py): its store, what events and writes drop, and
the HTTP behaviour in-process with stub handlers (the same against the real services
is in tests/e2e/test_read_cache.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from connexion.resolver import Resolver
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common import tokens
from gateway import security
from gateway.app import create_app
from gateway.calls import empty_response, header, json_response
from gateway.read_cache import (
    CATEGORIES,
    LISTS,
    ReadCache,
    product_id_in,
    product_tag,
    renewal_for_event,
    stock_tag,
    tags_for_event,
    tags_for_write,
)
from gateway.revocations import RevocationList
from gateway.settings import Settings

PRODUCT = "4f7d5a43-5d77-4b3a-9d4e-0d1b6c2f9a10"
OTHER = "0b0f9b2e-3c1d-4f5a-8e6b-7c8d9e0f1a2b"


def cache(**overrides: Any) -> ReadCache:
    settings = {"ttl_seconds": 5.0, "max_entries": 100, "max_bytes": 1_000_000, **overrides}
    return ReadCache(**settings)


# --- the store ---


def test_an_entry_is_served_until_its_ttl():
    store = cache(ttl_seconds=5)
    assert store.put("k", b"body", '"1"', ["t"], store.generation, now=100.0)
    assert store.get("k", now=103.9).body == b"body"
    store.get("k", now=104.5)  # the one reader asked to refresh it
    assert store.get("k", now=104.9).body == b"body"
    assert store.get("k", now=105.0) is None
    assert len(store) == 0


def test_one_reader_refreshes_an_entry_near_its_end_while_the_others_are_served():
    store = cache(ttl_seconds=5)
    store.put("k", b"old", None, [], store.generation, now=100.0)
    assert store.get("k", now=104.2) is None  # this reader goes to the service
    assert [store.get("k", now=104.3).body for _ in range(3)] == [b"old"] * 3
    store.put("k", b"new", None, [], store.generation, now=104.4)
    assert store.get("k", now=108.0).body == b"new"


def test_a_flood_of_distinct_keys_cannot_grow_it_past_its_bound():
    store = cache(max_entries=50)
    for number in range(10_000):
        store.put(f"product {number}", b"x" * 10, None, [f"product:{number}"], store.generation)
    assert len(store) == 50
    assert store.get("product 9999") is not None
    assert store.get("product 0") is None  # least recently used went first


def test_the_byte_bound_holds_too():
    store = cache(max_entries=1000, max_bytes=16 * 1000)
    for number in range(100):
        store.put(f"k{number}", b"x" * 900, None, [], store.generation)
    assert store.size_bytes <= 16 * 1000
    assert not store.put("huge", b"x" * 2000, None, [], store.generation)


def test_recently_read_entries_stay_longest():
    store = cache(max_entries=2)
    store.put("a", b"a", None, [], store.generation)
    store.put("b", b"b", None, [], store.generation)
    store.get("a")
    store.put("c", b"c", None, [], store.generation)
    assert store.get("a") is not None
    assert store.get("b") is None


def test_invalidation_drops_every_entry_with_the_tag_and_only_those():
    store = cache()
    store.put("one", b"1", None, [product_tag(PRODUCT)], store.generation)
    store.put("avail", b"2", None, [stock_tag(PRODUCT), product_tag(PRODUCT)], store.generation)
    store.put("other", b"3", None, [product_tag(OTHER)], store.generation)
    assert store.invalidate([product_tag(PRODUCT)]) == 2
    assert store.get("one") is None and store.get("avail") is None
    assert store.get("other") is not None


def test_a_read_in_flight_during_an_invalidation_is_not_stored():
    store = cache()
    generation = store.generation  # the read starts
    store.invalidate([product_tag(PRODUCT)])  # a write lands meanwhile
    assert not store.put("one", b"old", None, [product_tag(PRODUCT)], generation)
    assert store.get("one") is None


def _updated(version: int, **fields: Any) -> dict[str, Any]:
    """A ``product.updated`` event's data: the product as getProduct shows it, and what
    changed (svc_catalog/products.py)."""
    return {
        "id": PRODUCT,
        "title": "New",
        "version": version,
        **fields,
        "changed_fields": ["title"],
    }


def test_a_product_updated_event_renews_an_older_cached_product_instead_of_dropping_it():
    store = cache()
    key = f"getProduct /api/v1/products/{PRODUCT}?"
    store.put(key, b'{"version":3}', '"3"', [product_tag(PRODUCT)], store.generation)
    store.put("avail", b"{}", None, [stock_tag(PRODUCT), product_tag(PRODUCT)], store.generation)
    in_flight = store.generation
    renewal = renewal_for_event("product.updated", _updated(4))
    store.invalidate(tags_for_event("product.updated", _updated(4)), renewal)
    entry = store.get(key)
    assert entry is not None and entry.etag == '"4"'
    assert json.loads(entry.body) == {"id": PRODUCT, "title": "New", "version": 4}
    assert entry.tags == (product_tag(PRODUCT),)
    assert store.get("avail") is None, "what the event does not carry is dropped"
    # A read that started before the event may hold version 3: it is not stored over it.
    assert not store.put(key, b'{"version":3}', '"3"', [product_tag(PRODUCT)], in_flight)


def test_an_event_older_than_the_cached_product_or_for_an_uncached_one_stores_nothing():
    store = cache()
    key = f"getProduct /api/v1/products/{PRODUCT}?"
    store.put(key, b'{"version":5}', '"5"', [product_tag(PRODUCT)], store.generation)
    late = _updated(4)
    store.invalidate(
        tags_for_event("product.updated", late), renewal_for_event("product.updated", late)
    )
    assert store.get(key) is None, "dropped as before: the next read asks the catalog"
    store.invalidate([], renewal_for_event("product.updated", _updated(6)))
    assert len(store) == 0, "a product nobody read here is not added"


def test_only_product_updated_carries_a_renewal():
    assert renewal_for_event("product.deleted", {"id": PRODUCT, "version": 2}) is None
    assert renewal_for_event("product.created", {"id": PRODUCT, "version": 1}) is None
    assert renewal_for_event("review.created", {"product_id": PRODUCT}) is None


# --- what events and writes drop ---


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        ("product.updated", {"id": PRODUCT}, {product_tag(PRODUCT), stock_tag(PRODUCT), LISTS}),
        ("product.deleted", {"id": PRODUCT}, {product_tag(PRODUCT), stock_tag(PRODUCT), LISTS}),
        ("product.created", {"id": PRODUCT}, {product_tag(PRODUCT), stock_tag(PRODUCT), LISTS}),
        ("inventory.adjusted", {"product_id": PRODUCT}, {stock_tag(PRODUCT), LISTS}),
        (
            "inventory.reserved",
            {"items": [{"product_id": PRODUCT}, {"product_id": OTHER}]},
            {stock_tag(PRODUCT), stock_tag(OTHER), LISTS},
        ),
        ("review.created", {"product_id": PRODUCT}, {product_tag(PRODUCT), LISTS}),
        ("category.created", {"id": OTHER}, {CATEGORIES, LISTS}),
    ],
)
def test_events_drop_what_they_change(event_type, data, expected):
    assert set(tags_for_event(event_type, data)) == expected


def test_an_unknown_event_drops_everything():
    assert tags_for_event("catalog.something_new", {}) is None


@pytest.mark.parametrize(
    ("operation_id", "path", "expected"),
    [
        ("updateProduct", f"/api/v1/products/{PRODUCT}", {product_tag(PRODUCT), LISTS}),
        ("deleteProduct", f"/api/v1/products/{PRODUCT}", {product_tag(PRODUCT), LISTS}),
        ("setStock", f"/api/v1/products/{PRODUCT}/stock", {stock_tag(PRODUCT), LISTS}),
        ("confirmImageUpload", f"/api/v1/products/{PRODUCT}/images", {product_tag(PRODUCT)}),
        ("reorderProductImages", f"/api/v1/products/{PRODUCT}/images", {product_tag(PRODUCT)}),
        (
            "deleteProductImage",
            f"/api/v1/products/{PRODUCT}/images/{OTHER}",
            {product_tag(PRODUCT), LISTS},
        ),
        # Asking for an upload changes nothing a reader sees.
        ("requestImageUpload", f"/api/v1/products/{PRODUCT}/images/uploads", set()),
        ("createProduct", "/api/v1/products", {LISTS}),
        ("createCategory", "/api/v1/categories", {CATEGORIES, LISTS}),
        ("placeOrder", "/api/v1/orders", set()),
    ],
)
def test_writes_through_the_gateway_drop_what_they_change(operation_id, path, expected):
    assert expected <= set(tags_for_write(operation_id, path))
    assert bool(expected) == bool(tags_for_write(operation_id, path))


def test_the_product_id_is_read_from_the_path():
    assert product_id_in(f"/api/v1/products/{PRODUCT}/availability") == PRODUCT
    assert product_id_in("/api/v1/products") == ""


# --- over HTTP, with stub handlers standing in for the services ---


class Stubs:
    """Handlers that count their calls: a call is what the cache saves."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.version = 1

    def resolve(self, operation_id: str) -> Any:
        def handler(**params: Any) -> Any:
            self.calls[operation_id] = self.calls.get(operation_id, 0) + 1
            if operation_id == "getProduct":
                return (
                    {"id": params["product_id"], "version": self.version},
                    200,
                    {
                        "Content-Type": "application/json",
                        "ETag": f'"{self.version}"',
                    },
                )
            if operation_id == "updateProduct":
                self.version += 1
                return json_response({"version": self.version}, 200, {"ETag": f'"{self.version}"'})
            if operation_id == "getCart":
                return json_response({"owner": header("Authorization")})
            if operation_id == "getAvailability":
                return empty_response(404) if self.version < 0 else json_response({})
            return json_response({"items": [], "next_cursor": None})

        return handler


@pytest.fixture
def stubs() -> Stubs:
    return Stubs()


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def admin_token(private_key) -> str:
    now = int(time.time())
    claims = {
        "iss": tokens.issuer(),
        "aud": tokens.audience(),
        "sub": "admin-1",
        "iat": now,
        "exp": now + 300,
        "scope": "admin:catalog",
    }
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": "k"})


@pytest.fixture
def client(stubs, private_key):
    jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": "k", "alg": "RS256", "use": "sig"})
    key_cache = security.KeyCache(lambda: {"keys": [jwk]}, refresh_interval=3600)
    key_cache.refresh()
    app = create_app(
        Settings(validate_responses=False, redis_url="", read_cache=True, cache_ttl=60),
        resolver=Resolver(function_resolver=stubs.resolve),
        key_cache=key_cache,
        revocations=RevocationList(None, poll_seconds=3600),
    )
    return app.test_client()


def test_a_product_is_read_from_the_service_once(client, stubs):
    first = client.get(f"/api/v1/products/{PRODUCT}")
    second = client.get(f"/api/v1/products/{PRODUCT}")
    assert first.json() == second.json() == {"id": PRODUCT, "version": 1}
    assert stubs.calls["getProduct"] == 1
    assert second.headers["etag"] == '"1"'
    assert second.headers["content-type"] == "application/json"
    assert second.headers["cache-control"] == "public, no-cache"
    assert second.headers["x-request-id"]


def test_a_renewal_is_the_answer_the_gateway_gives_byte_for_byte(client, stubs):
    stubs.version = 7
    answer = client.get(f"/api/v1/products/{PRODUCT}")
    renewal = renewal_for_event("product.updated", {**answer.json(), "changed_fields": []})
    assert renewal is not None
    assert renewal.body == answer.content and renewal.etag == answer.headers["etag"]


def test_if_none_match_is_answered_from_the_cache(client, stubs):
    client.get(f"/api/v1/products/{PRODUCT}")
    not_modified = client.get(f"/api/v1/products/{PRODUCT}", headers={"If-None-Match": '"1"'})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == '"1"'
    assert "content-type" not in not_modified.headers
    changed = client.get(f"/api/v1/products/{PRODUCT}", headers={"If-None-Match": '"0"'})
    assert changed.status_code == 200
    assert stubs.calls["getProduct"] == 1


def test_a_refused_if_none_match_is_still_refused(client):
    client.get(f"/api/v1/products/{PRODUCT}")
    refused = client.get(f"/api/v1/products/{PRODUCT}", headers={"If-None-Match": "x" * 2000})
    assert refused.status_code == 400


def test_no_cache_asks_the_service_and_refreshes_the_entry(client, stubs):
    client.get(f"/api/v1/products/{PRODUCT}")
    stubs.version = 7  # changed behind the gateway's back (an event that was lost)
    fresh = client.get(f"/api/v1/products/{PRODUCT}", headers={"Cache-Control": "no-cache"})
    assert fresh.json()["version"] == 7
    assert client.get(f"/api/v1/products/{PRODUCT}").json()["version"] == 7
    assert stubs.calls["getProduct"] == 2


def test_a_write_through_the_gateway_is_read_back_at_once(client, stubs, admin_token):
    assert client.get(f"/api/v1/products/{PRODUCT}").json()["version"] == 1
    client.get("/api/v1/products?limit=20")
    patch = client.patch(
        f"/api/v1/products/{PRODUCT}",
        json={"title": "New"},
        headers={
            "Content-Type": "application/merge-patch+json",
            "Authorization": f"Bearer {admin_token}",
        },
    )
    assert patch.status_code == 200, patch.text
    assert client.get(f"/api/v1/products/{PRODUCT}").json()["version"] == 2
    client.get("/api/v1/products?limit=20")
    assert stubs.calls["getProduct"] == 2
    assert stubs.calls["listProducts"] == 2


def test_first_pages_are_cached_later_pages_are_not(client, stubs):
    client.get("/api/v1/products?limit=20")
    client.get("/api/v1/products?limit=20")
    assert stubs.calls["listProducts"] == 1
    assert client.get("/api/v1/products?limit=20").headers["cache-control"].startswith("public")
    client.get("/api/v1/products?limit=20&cursor=abc")
    client.get("/api/v1/products?limit=20&cursor=abc")
    assert stubs.calls["listProducts"] == 3


def test_refusals_and_errors_are_not_cached(client, stubs):
    assert client.get("/api/v1/products/not-a-uuid").status_code == 400
    assert client.get("/api/v1/products/not-a-uuid").status_code == 400
    stubs.version = -1
    assert client.get(f"/api/v1/products/{PRODUCT}/availability").status_code == 404
    stubs.version = 1
    assert client.get(f"/api/v1/products/{PRODUCT}/availability").status_code == 200
    assert stubs.calls["getAvailability"] == 2


def test_private_reads_are_never_cached(client, stubs):
    # No token: refused before any handler, every time, from no cache.
    assert client.get("/api/v1/cart").status_code == 401
    assert client.get("/api/v1/cart").status_code == 401
    assert "getCart" not in stubs.calls
