"""Registering, verifying, logging in and token checks, through the gateway, with the real
auth service behind it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from common import tokens
from tests.support import (
    assert_problem,
    event_data_for,
    outbox_events,
    signed_with_the_services_key,
)

PASSWORD = "correct horse battery"


def registration(**fields):
    return {
        "email": f"ada-{uuid.uuid4().hex[:8]}@Example.COM",
        "password": PASSWORD,
        "name": "Ada Lovelace",
        "accept_terms": True,
        **fields,
    }


def log_in(api, email, password=PASSWORD, **kwargs):
    return api.post("/auth/login", json={"email": email, "password": password}, **kwargs)


def test_register_verify_log_in_and_read_my_account(api):
    body = registration()
    response = api.post("/auth/register", json=body)
    assert response.status_code == 202
    assert "password" not in response.text

    login = log_in(api, body["email"].upper())
    assert login.status_code == 200
    assert login.headers["Cache-Control"] == "no-store"
    pair = login.json()
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] > 0
    assert pair["refresh_expires_in"] == 7 * 24 * 3600
    assert "admin:catalog" not in pair["scope"].split()

    me = api.get("/me", token=pair["access_token"]).json()
    assert me["email"] == body["email"].lower()
    assert me["roles"] == ["customer"]
    assert me["email_verified"] is False
    assert me["mfa_enabled"] is False

    event = event_data_for(api.platform, "user.registered", body["email"])
    assert "password" not in json.dumps(event)
    assert (
        api.post("/auth/verify-email", json={"token": event["verification_token"]}).status_code
        == 204
    )
    assert api.get("/me", token=pair["access_token"]).json()["email_verified"] is True
    # Single use.
    reused = api.post("/auth/verify-email", json={"token": event["verification_token"]})
    assert assert_problem(reused, 422)["field"] == "token"


def test_a_verification_token_can_be_asked_for_again(api):
    body = registration()
    api.post("/auth/register", json=body)
    first = event_data_for(api.platform, "user.registered", body["email"])["verification_token"]
    resent = api.post("/auth/verify-email/resend", json={"email": body["email"]})
    assert resent.status_code == 202
    second = event_data_for(api.platform, "user.verification_requested", body["email"])
    assert (
        api.post("/auth/verify-email", json={"token": second["verification_token"]}).status_code
        == 204
    )
    # Verifying used up every outstanding verification token.
    assert_problem(api.post("/auth/verify-email", json={"token": first}), 422)


def test_unknown_or_malformed_verification_tokens(api):
    assert_problem(api.post("/auth/verify-email", json={"token": "x" * 43}), 422)
    assert_problem(api.post("/auth/verify-email", json={"token": "short"}), 400)
    assert_problem(api.post("/auth/verify-email", json={"token": "a" * 40 + "'; --"}), 400)


def test_registering_a_taken_address_looks_like_a_new_registration(api):
    body = registration()
    first = api.post("/auth/register", json=body)
    again = api.post("/auth/register", json=registration(email=body["email"].upper()))
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    # The owner is told by email; the account is untouched (old password still works).
    attempts = outbox_events(api.platform, "auth", "user.registration_attempted")
    assert [event["data"]["email"] for event in attempts] == [body["email"].lower()]
    assert log_in(api, body["email"]).status_code == 200


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
    assert claims["sid"]  # the session (refresh token family)


def test_wrong_password_and_unknown_email_look_the_same(api):
    body = registration()
    api.post("/auth/register", json=body)
    wrong_password = log_in(api, body["email"], "nope")
    unknown_email = log_in(api, "nobody@example.com")
    first, second = assert_problem(wrong_password, 401), assert_problem(unknown_email, 401)
    assert first["detail"] == second["detail"]
    assert wrong_password.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"email": "not-an-email"}, 400),
        ({"email": "ada@localhost"}, 422),  # syntactically fine, not deliverable anywhere
        ({"email": "ada@exa mple.com"}, 422),
        ({"password": "short"}, 400),
        ({"password": "x" * 257}, 400),
        ({"accept_terms": False}, 400),
        ({"role": "admin"}, 400),  # no self-promotion through unknown fields
    ],
)
def test_bad_registrations(api, fields, status):
    assert_problem(api.post("/auth/register", json=registration(**fields)), status)


@pytest.mark.parametrize(
    "password",
    ["password1234", "1234567890", "qwertyuiop", "aaaaaaaaaaaa", "Password1234"],
)
def test_weak_and_breached_passwords_are_refused(api, password):
    body = registration(password=password)
    assert assert_problem(api.post("/auth/register", json=body), 422)["field"] == "password"


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
    assert first.status_code == replay.status_code == 202
    assert first.json() == replay.json()
    assert len(outbox_events(api.platform, "auth", "user.registered")) == 1


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


def _forge(token: str, **changes) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged_payload}.{signature}"


def test_a_customer_token_edited_to_claim_admin_is_refused(api):
    _, token = api.platform.new_customer()
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = _forge(token, scope=claims["scope"] + " admin:catalog", roles=["customer", "admin"])
    body = assert_problem(
        api.post("/categories", json={"slug": "forged", "name": "F"}, token=forged), 401
    )
    assert "valid" in body["detail"]
    assert api.get("/categories").json()["items"] == []


def test_alg_none_and_hs256_with_the_public_key_are_refused(api):
    _, token = api.platform.new_customer()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["scope"] = "admin:users admin:catalog"
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]})
    assert_problem(api.get("/admin/users", token=unsigned), 401)
    # HS256 keyed with the published RSA public key: the classic algorithm confusion.
    jwk = next(key for key in api.get("/auth/jwks").json()["keys"] if key["kid"] == header["kid"])
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    header_segment = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}).encode()
    ).rstrip(b"=")
    payload_segment = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signing_input = header_segment + b"." + payload_segment
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    confused = (signing_input + b"." + signature).decode()
    assert_problem(api.get("/admin/users", token=confused), 401)
    assert_problem(api.get("/me", token=confused), 401)


def test_tokens_are_checked_for_expiry_audience_and_issuer(api):
    platform = api.platform
    good = signed_with_the_services_key(platform)
    assert api.post("/categories", json={"slug": "ok", "name": "Ok"}, token=good).status_code == 201

    expired = signed_with_the_services_key(
        platform, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
    )
    body = assert_problem(api.get("/me", token=expired), 401)
    assert "expired" in body["detail"]
    for claims in ({"aud": "another-api"}, {"iss": "https://issuer.example"}):
        assert_problem(api.get("/me", token=signed_with_the_services_key(platform, **claims)), 401)


def test_registration_with_a_nul_character_is_400(api):
    assert_problem(api.post("/auth/register", json=registration(name="Ada\u0000")), 400)
