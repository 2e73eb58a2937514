"""Accounts and tokens through the gateway, with the real auth service behind it."""

from __future__ import annotations

import uuid

import jwt
import pytest

from common import tokens
from tests.support import assert_problem

PASSWORD = "correct horse battery"


def registration(**fields):
    return {
        "email": f"ada-{uuid.uuid4().hex[:8]}@Example.COM",
        "password": PASSWORD,
        "name": "Ada Lovelace",
        "accept_terms": True,
        **fields,
    }


def test_register_log_in_and_read_my_account(api):
    body = registration()
    response = api.post("/auth/register", json=body)
    assert response.status_code == 201
    user = response.json()
    assert user["email"] == body["email"].lower()
    assert user["roles"] == ["customer"]
    assert "password" not in response.text

    login = api.post("/auth/login", json={"email": body["email"].upper(), "password": PASSWORD})
    assert login.status_code == 200
    assert login.headers["Cache-Control"] == "no-store"
    token = login.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] > 0
    assert "admin:catalog" not in token["scope"].split()

    me = api.get("/me", token=token["access_token"])
    assert me.status_code == 200
    assert me.json() == user


def test_token_is_rs256_signed_by_a_published_key(api):
    body = registration()
    api.post("/auth/register", json=body)
    token = api.platform.login(body["email"], PASSWORD)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    jwks = api.get("/auth/jwks")
    assert jwks.headers["Cache-Control"].startswith("public")
    key = jwt.PyJWKSet.from_dict(jwks.json())[header["kid"]]
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=tokens.audience(), issuer=tokens.issuer()
    )
    assert claims["roles"] == ["customer"]


def test_wrong_password_and_unknown_email_look_the_same(api):
    body = registration()
    api.post("/auth/register", json=body)
    wrong_password = api.post("/auth/login", json={"email": body["email"], "password": "nope"})
    unknown_email = api.post(
        "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    first, second = assert_problem(wrong_password, 401), assert_problem(unknown_email, 401)
    assert first["detail"] == second["detail"]
    assert wrong_password.headers["WWW-Authenticate"].startswith("Bearer")


def test_duplicate_email_in_any_case_is_409(api):
    body = registration()
    assert api.post("/auth/register", json=body).status_code == 201
    again = registration(email=body["email"].upper())
    assert assert_problem(api.post("/auth/register", json=again), 409)["field"] == "email"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"email": "not-an-email"}, 400),
        ({"email": "ada@localhost"}, 422),  # syntactically fine, not deliverable anywhere
        ({"email": "ada@exa mple.com"}, 422),
        ({"password": "short"}, 400),
        ({"accept_terms": False}, 400),
        ({"role": "admin"}, 400),  # no self-promotion through unknown fields
    ],
)
def test_bad_registrations(api, fields, status):
    assert_problem(api.post("/auth/register", json=registration(**fields)), status)


def test_password_may_not_be_the_email(api):
    body = registration()
    body["password"] = body["email"]
    assert assert_problem(api.post("/auth/register", json=body), 422)["field"] == "password"


def test_missing_terms_acceptance_is_400(api):
    body = registration()
    del body["accept_terms"]
    assert_problem(api.post("/auth/register", json=body), 400)


def test_registration_replay_creates_one_account(api):
    body = registration()
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post("/auth/register", json=body, headers=headers)
    replay = api.post("/auth/register", json=body, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert first.json() == replay.json()


def test_me_needs_a_token(api):
    assert_problem(api.get("/me"), 401)
    assert_problem(api.get("/me", token="garbage"), 401)


def test_first_admin_is_created_by_the_command_line(api, tmp_path, monkeypatch):
    from ops import cli

    email = f"boss-{uuid.uuid4().hex[:6]}@example.com"
    monkeypatch.setenv("AUTH_DATABASE_URL", api.platform.database_urls["auth"])
    monkeypatch.setenv("NEW_ADMIN_PASSWORD", "a strong admin password")
    argv = ["create-admin", "--email", email, "--password-env", "NEW_ADMIN_PASSWORD"]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0, "running it again changes nothing"
    token = api.platform.login(email, "a strong admin password")
    assert api.get("/me", token=token).json()["roles"] == ["customer", "admin"]
    assert (
        api.post("/categories", json={"slug": "cli-made", "name": "C"}, token=token).status_code
        == 201
    )


def test_create_admin_promotes_an_existing_customer(api, monkeypatch):
    from ops import cli

    customer, _ = api.platform.new_customer()
    monkeypatch.setenv("AUTH_DATABASE_URL", api.platform.database_urls["auth"])
    monkeypatch.setenv("UNUSED", "ignored for existing accounts")
    assert cli.main(["create-admin", "--email", customer["email"], "--password-env", "UNUSED"]) == 0
    token = api.platform.login(customer["email"], "a long enough password")
    assert "admin:catalog" in jwt.decode(token, options={"verify_signature": False})["scope"]


def test_a_customer_token_edited_to_claim_admin_is_refused(api):
    import base64
    import json

    _, token = api.platform.new_customer()
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] += " admin:catalog"
    claims["roles"].append("admin")
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = f"{header}.{forged_payload}.{signature}"
    body = assert_problem(
        api.post("/categories", json={"slug": "forged", "name": "F"}, token=forged), 401
    )
    assert "valid" in body["detail"]
    assert api.get("/categories").json()["items"] == []


def _sign_with_the_services_key(platform, **claims) -> str:
    """A token signed with auth's real current key (decrypted from its database, as an
    attacker who stole it could not do without the passphrase): only the claims differ."""
    import time

    from cryptography.hazmat.primitives import serialization
    from sqlalchemy import text

    with platform.engine("auth").connect() as connection:
        kid, pem = connection.execute(
            text("SELECT kid, private_key_pem FROM signing_keys WHERE retired_at IS NULL")
        ).one()
    key = serialization.load_pem_private_key(
        pem.encode(), password=platform.env["AUTH_KEY_PASSPHRASE"].encode()
    )
    now = int(time.time())
    payload = {
        "iss": tokens.issuer(),
        "aud": tokens.audience(),
        "sub": platform.admin.id,
        "iat": now,
        "exp": now + 300,
        "scope": "admin:catalog",
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_tokens_are_checked_for_expiry_audience_and_issuer(api):
    import time

    platform = api.platform
    good = _sign_with_the_services_key(platform)
    assert api.post("/categories", json={"slug": "ok", "name": "Ok"}, token=good).status_code == 201

    expired = _sign_with_the_services_key(
        platform, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
    )
    body = assert_problem(api.get("/me", token=expired), 401)
    assert "expired" in body["detail"]
    for claims in ({"aud": "another-api"}, {"iss": "https://issuer.example"}):
        assert_problem(api.get("/me", token=_sign_with_the_services_key(platform, **claims)), 401)


def test_registration_with_a_nul_character_is_400(api):
    assert_problem(api.post("/auth/register", json=registration(name="Ada\u0000")), 400)
