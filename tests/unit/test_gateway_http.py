"""The gateway's HTTP layer in-process: OpenAPI 3.1 validation, token checks, problems.

Handlers are replaced by a stub (no services run here), so these tests pin down what
the gateway itself refuses before any RPC happens. The same behaviour is exercised
against the real services in tests/e2e.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from connexion.resolver import Resolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common import schemas, tokens
from gateway import security
from gateway.app import create_app
from gateway.calls import json_response
from gateway.revocations import RevocationList
from gateway.settings import Settings

KID = "test-key"
PRODUCT_ID = "4f7d5a43-5d77-4b3a-9d4e-0d1b6c2f9a10"


def stub_handler(**params: Any) -> Any:
    """Stands in for every operation: reaching it means the request passed validation."""
    return json_response({"reached": True}, 200)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key_cache(private_key) -> security.KeyCache:
    jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    cache = security.KeyCache(lambda: {"keys": [jwk]}, refresh_interval=3600)
    cache.refresh()
    return cache


@pytest.fixture(scope="module")
def client(key_cache):
    app = create_app(
        Settings(validate_responses=False, redis_url=""),
        resolver=Resolver(function_resolver=lambda _operation_id: stub_handler),
        key_cache=key_cache,
        revocations=RevocationList(None, poll_seconds=3600),
    )
    return app.test_client()


def admin_claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims of an admin token; an override of None removes that claim."""
    now = int(time.time())
    claims = {
        "iss": tokens.issuer(),
        "aud": tokens.audience(),
        "sub": "user-1",
        "iat": now,
        "exp": now + 300,
        "scope": "admin:catalog",
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not None}


@pytest.fixture
def mint(private_key):
    def mint_token(
        *,
        key: Any = None,
        algorithm: str = "RS256",
        headers: dict | None = None,
        **claims: Any,
    ) -> str:
        payload = admin_claims(**claims)
        return jwt.encode(
            payload,
            key if key is not None else private_key,
            algorithm=algorithm,
            headers={"kid": KID, **(headers or {})},
        )

    return mint_token


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["correlation_id"] == response.headers["x-request-id"]
    return body


def valid_book(**fields: Any) -> dict:
    return {
        "isbn13": "9780262033848",
        "title": "Introduction to Algorithms",
        "authors": ["Thomas H. Cormen"],
        "price": {"amount": 8999, "currency": "EUR"},
        **fields,
    }


def post_book(client, mint, body: dict):
    return client.post("/api/v1/products", json=body, headers={"Authorization": f"Bearer {mint()}"})


# --- OpenAPI 3.1 / JSON Schema 2020-12 keywords, which Draft 4 would silently ignore ---


def test_valid_request_reaches_the_handler(client, mint):
    assert post_book(client, mint, valid_book(dimensions_mm=[203, 229, 51])).status_code == 200


def test_const_is_enforced(client):
    body = {"email": "ada@example.com", "password": "long enough pw", "accept_terms": False}
    detail = problem(client.post("/api/v1/auth/register", json=body), 400)["detail"]
    assert "accept_terms" in detail
    body["accept_terms"] = True
    assert client.post("/api/v1/auth/register", json=body).status_code == 200


def test_a_refused_password_is_not_echoed_back(client):
    body = {"email": "ada@example.com", "password": "hunter2", "accept_terms": True}
    detail = problem(client.post("/api/v1/auth/register", json=body), 400)["detail"]
    assert "password" in detail
    assert "hunter2" not in detail


def test_numeric_exclusive_minimum_is_enforced(client, mint):
    body = valid_book(price={"amount": 0, "currency": "EUR"})
    assert (
        "less than or equal to the minimum of 0"
        in problem(post_book(client, mint, body), 400)["detail"]
    )
    assert post_book(client, mint, valid_book(price={"amount": 1, "currency": "EUR"})).is_success


@pytest.mark.parametrize(
    "dimensions", [["203", 229, 51], [203, 229], [203, 229, 51, 10], [203, 0, 51]]
)
def test_array_length_and_item_rules_are_enforced(client, mint, dimensions):
    problem(post_book(client, mint, valid_book(dimensions_mm=dimensions)), 400)


def test_property_names_are_enforced(client, mint):
    problem(post_book(client, mint, valid_book(attributes={"Not-A-Key": "x"})), 400)
    assert post_book(client, mint, valid_book(attributes={"pages": 1312})).is_success


def test_type_lists_allow_null_only_where_declared(client, mint):
    headers = {"Authorization": f"Bearer {mint()}"}
    url = f"/api/v1/products/{PRODUCT_ID}"
    assert client.patch(url, json={"description": None}, headers=headers).is_success
    problem(client.patch(url, json={"title": None}, headers=headers), 400)


def test_unknown_fields_are_refused(client, mint):
    assert "unexpected" in problem(post_book(client, mint, valid_book(colour="red")), 400)["detail"]


def test_wrong_types_and_missing_fields_are_refused(client, mint):
    problem(post_book(client, mint, valid_book(title=42)), 400)
    incomplete = valid_book()
    del incomplete["authors"]
    assert "authors" in problem(post_book(client, mint, incomplete), 400)["detail"]


# --- parameters, bodies and routes ---


def test_malformed_path_parameter_is_400_not_404(client):
    assert "uuid" in problem(client.get("/api/v1/products/not-a-uuid"), 400)["detail"]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=ten", "sort=popularity", "price_min=-1"]
)
def test_out_of_range_query_parameters_are_400(client, query):
    problem(client.get(f"/api/v1/products?{query}"), 400)


def test_unknown_query_parameters_are_400(client):
    assert "colour" in problem(client.get("/api/v1/products?colour=red"), 400)["detail"]


def post_raw(client, mint, content: bytes, content_type: str):
    return client.post(
        "/api/v1/products",
        content=content,
        headers={"Authorization": f"Bearer {mint()}", "Content-Type": content_type},
    )


def test_malformed_json_is_400(client, mint):
    problem(post_raw(client, mint, b'{"title": ', "application/json"), 400)


def test_wrong_content_type_is_415(client, mint):
    problem(post_raw(client, mint, b"title=x", "text/plain"), 415)


def test_unknown_route_and_method_are_problems(client):
    problem(client.get("/api/v1/no-such-thing"), 404)
    problem(client.put("/api/v1/products"), 405)


# --- tokens ---


def test_missing_token_is_401_with_a_challenge(client):
    response = post_book_without_token(client)
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def post_book_without_token(client):
    return client.post("/api/v1/products", json=valid_book())


def test_missing_scope_is_403(client, mint):
    customer = mint(scope="read:orders write:orders")
    response = client.post(
        "/api/v1/products", json=valid_book(), headers={"Authorization": f"Bearer {customer}"}
    )
    assert "admin:catalog" in problem(response, 403)["detail"]


def test_expired_token_is_401_and_says_so(client, mint):
    expired = mint(iat=int(time.time()) - 3600, exp=int(time.time()) - 600)
    response = client.post(
        "/api/v1/products", json=valid_book(), headers={"Authorization": f"Bearer {expired}"}
    )
    assert "expired" in problem(response, 401)["detail"]


def _unsigned(payload: dict, header: dict) -> str:
    def encode(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    return f"{encode(header)}.{encode(payload)}."


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda mint, key: mint(aud="someone-else"), id="wrong audience"),
        pytest.param(lambda mint, key: mint(iss="https://evil.example"), id="wrong issuer"),
        pytest.param(lambda mint, key: mint(exp=None), id="no expiry"),
        pytest.param(
            lambda mint, key: mint(
                key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
            id="signed by another key with our kid",
        ),
        pytest.param(lambda mint, key: mint(headers={"kid": "unknown"}), id="unknown kid"),
        pytest.param(
            lambda mint, key: _unsigned(admin_claims(), {"alg": "none", "typ": "JWT", "kid": KID}),
            id="alg none",
        ),
        pytest.param(
            lambda mint, key: _hs256_with_public_key(key),
            id="HS256 keyed with the public key",
        ),
        pytest.param(lambda mint, key: _tampered(mint()), id="payload tampered"),
        pytest.param(lambda mint, key: "not.a.jwt", id="garbage"),
    ],
)
def test_forged_tokens_are_401(client, mint, private_key, forge):
    token = forge(mint, private_key)
    response = client.post(
        "/api/v1/products", json=valid_book(), headers={"Authorization": f"Bearer {token}"}
    )
    problem(response, 401)


def _hs256_with_public_key(private_key: rsa.RSAPrivateKey) -> str:
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": KID}
    # PyJWT refuses to use a PEM as an HMAC secret, so sign by hand like an attacker would.
    signing_input = _unsigned(admin_claims(), header).rstrip(".")
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_tokens_are_refused_with_503_until_keys_are_loaded(client, mint, key_cache):
    security.use_key_cache(security.KeyCache(lambda: {}, refresh_interval=3600))
    try:
        response = client.post(
            "/api/v1/products", json=valid_book(), headers={"Authorization": f"Bearer {mint()}"}
        )
        problem(response, 503)
    finally:
        security.use_key_cache(key_cache)


# --- correlation ids ---


def test_request_id_is_echoed_or_assigned(client):
    assert (
        client.get("/api/v1/products/x", headers={"X-Request-ID": "abc-123"}).headers[
            "x-request-id"
        ]
        == "abc-123"
    )
    assigned = client.get("/api/v1/products/x").headers["x-request-id"]
    assert len(assigned) == 36


@pytest.mark.parametrize("bad", ["a" * 200, "evil\tvalue", "two words"])
def test_unsafe_request_ids_are_replaced(client, bad):
    assert (
        client.get("/api/v1/products/x", headers={"X-Request-ID": bad}).headers["x-request-id"]
        != bad
    )


@pytest.mark.parametrize("content", [b"\x14\xff\xfe", b"\xc3", b'{"title": "\xff"}'])
def test_bodies_that_are_not_utf8_are_400(client, mint, content):
    assert "utf-8" in problem(post_raw(client, mint, content, "application/json"), 400)["detail"]


def test_unknown_charset_is_400(client, mint):
    problem(post_raw(client, mint, b"{}", "application/json; charset=klingon"), 400)


def test_405_lists_every_method_the_spec_defines(client):
    response = client.put(f"/api/v1/products/{PRODUCT_ID}")
    problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert client.put("/api/v1/products").headers["allow"] == "GET, HEAD, POST"


def test_oversized_bodies_are_413_before_being_read(client, mint):
    too_big = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    assert (
        "larger than" in problem(post_raw(client, mint, too_big, "application/json"), 413)["detail"]
    )


def test_absurdly_nested_json_is_400(client, mint):
    nested = b"[" * 100_000 + b"]" * 100_000
    assert (
        "nests too deeply"
        in problem(post_raw(client, mint, nested, "application/json"), 400)["detail"]
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/products/%0A",
        "/api/v1/products/a%0Ab/availability",
        "/api/v1/products/%0A/also-bought",
    ],
)
def test_line_breaks_in_a_path_are_400_not_500(client, path):
    assert "line breaks" in problem(client.get(path), 400)["detail"]


# --- validation problems: their type, and where the bad fields are ---


def invalid_request(response) -> list[dict[str, str]]:
    """The problem is a documented ``invalid-request``; returns its ``errors``."""
    body = problem(response, 400)
    assert body["type"] == "urn:bookstore:problem:invalid-request"
    schemas.validate("InvalidRequestProblem", body)  # as openapi/bookstore.yaml documents it
    assert body["detail"] == body["errors"][0]["detail"]
    return body["errors"]


def test_each_bad_body_field_has_a_json_pointer(client, mint):
    book = valid_book(price={"amount": 0, "currency": "eur"}, authors=["Ada", 7], colour="red")
    errors = invalid_request(post_book(client, mint, book))
    pointers = {error["pointer"] for error in errors}
    assert pointers == {
        "/body/colour",
        "/body/price/amount",
        "/body/price/currency",
        "/body/authors/1",
    }
    unexpected = next(error for error in errors if error["pointer"] == "/body/colour")
    assert "'colour' was unexpected" in unexpected["detail"]


def test_pointers_escape_slashes_and_tildes_in_names(client, mint):
    # RFC 6901: "~" is written "~0" and "/" is written "~1" inside a name.
    errors = invalid_request(post_book(client, mint, valid_book(attributes={"a/b~c": 1})))
    assert [error["pointer"] for error in errors] == ["/body/attributes"]
    assert schemas.json_pointer("body", "a/b~c", 0) == "/body/a~1b~0c/0"


def test_parameters_are_pointed_at_by_where_they_are_sent(client, mint):
    assert invalid_request(client.get("/api/v1/products/not-a-uuid"))[0]["pointer"] == (
        "/path/product_id"
    )
    errors = invalid_request(client.get("/api/v1/products?limit=0&colour=red&sort=popular"))
    assert [error["pointer"] for error in errors] == [
        "/query/colour",
        "/query/limit",
        "/query/sort",
    ]
    response = client.post(
        "/api/v1/products",
        json=valid_book(),
        headers={"Authorization": f"Bearer {mint()}", "Idempotency-Key": "two words"},
    )
    assert [error["pointer"] for error in invalid_request(response)] == ["/header/Idempotency-Key"]


def test_a_body_that_cannot_be_read_points_at_the_body(client, mint):
    errors = invalid_request(post_raw(client, mint, b'{"title": ', "application/json"))
    assert errors[0]["pointer"] == "/body"
    nul = valid_book(authors=["Ada", "Bad\x00Name"])
    assert invalid_request(post_book(client, mint, nul))[0]["pointer"] == "/body/authors/1"


def test_a_malformed_path_is_an_invalid_request_about_the_whole_request(client):
    assert invalid_request(client.get("/api/v1/products/%0A"))[0]["pointer"] == ""
