"""Refresh tokens (rotation, reuse detection), logout, password change and reset, and
signing key rotation, through the gateway."""

from __future__ import annotations

import uuid

import jwt
import pytest

from tests.support import (
    age_current_signing_key,
    assert_problem,
    event_data_for,
    eventually,
    signed_with_the_services_key,
)

PASSWORD = "a long enough password"


def customer(api):
    user, _ = api.platform.new_customer(PASSWORD)
    pair = api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}).json()
    return user, pair


def refresh(api, token):
    return api.post("/auth/refresh", json={"refresh_token": token})


def assert_revoked(api, access_token):
    """The gateways learn revocations by polling auth (about a second): wait for it."""
    return eventually(lambda: assert_problem(api.get("/me", token=access_token), 401))


def test_refresh_rotates_and_a_reused_token_revokes_the_family(api):
    user, first = customer(api)
    second = refresh(api, first["refresh_token"])
    assert second.status_code == 200
    assert second.headers["Cache-Control"] == "no-store"
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert api.get("/me", token=second["access_token"]).json()["id"] == user["id"]
    claims = [
        jwt.decode(p["access_token"], options={"verify_signature": False}) for p in (first, second)
    ]
    assert claims[0]["sid"] == claims[1]["sid"]

    # An attacker replays the first (spent) refresh token: the whole family dies...
    body = assert_problem(refresh(api, first["refresh_token"]), 401)
    assert "already used" in body["detail"]
    # ...including the legitimate client's current token, refresh and access alike.
    assert_problem(refresh(api, second["refresh_token"]), 401)
    assert_revoked(api, second["access_token"])
    audit = api.get(
        "/admin/audit-events",
        params={"user_id": user["id"], "action": "refresh.reused"},
        token=api.admin,
    ).json()["items"]
    assert len(audit) == 1


def test_other_sessions_survive_a_reuse_in_one_family(api):
    user, first_login = customer(api)
    second_login = api.post(
        "/auth/login", json={"email": user["email"], "password": PASSWORD}
    ).json()
    refresh(api, first_login["refresh_token"])
    refresh(api, first_login["refresh_token"])  # reuse: first family revoked
    assert_revoked(api, first_login["access_token"])
    assert api.get("/me", token=second_login["access_token"]).status_code == 200
    assert refresh(api, second_login["refresh_token"]).status_code == 200


def test_logout_revokes_the_session(api):
    user, pair = customer(api)
    other = api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}).json()
    assert (
        api.post("/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code == 204
    )
    assert_problem(refresh(api, pair["refresh_token"]), 401)
    # The access token of that login stops working too; another login's does not.
    body = assert_revoked(api, pair["access_token"])
    assert "revoked" in body["detail"]
    assert api.get("/me", token=other["access_token"]).status_code == 200
    # Logging out twice, or with an unknown token, is fine.
    assert (
        api.post("/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code == 204
    )
    assert api.post("/auth/logout", json={"refresh_token": "x" * 43}).status_code == 204


def test_garbage_refresh_tokens(api):
    assert_problem(refresh(api, "x" * 43), 401)
    assert_problem(refresh(api, "short"), 400)
    assert_problem(api.post("/auth/refresh", json={}), 400)


def test_password_change_signs_out_every_session(api):
    user, pair = customer(api)
    change = api.post(
        "/me/password",
        json={"current_password": "wrong password here", "new_password": "another fine password"},
        token=pair["access_token"],
    )
    assert_problem(change, 401)
    weak = api.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": "password1234"},
        token=pair["access_token"],
    )
    assert assert_problem(weak, 422)["field"] == "password"
    same = api.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": PASSWORD},
        token=pair["access_token"],
    )
    assert_problem(same, 422)
    changed = api.post(
        "/me/password",
        json={"current_password": PASSWORD, "new_password": "another fine password"},
        token=pair["access_token"],
    )
    assert changed.status_code == 204
    assert_problem(refresh(api, pair["refresh_token"]), 401)
    assert_problem(
        api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}), 401
    )
    new = api.post(
        "/auth/login", json={"email": user["email"], "password": "another fine password"}
    )
    assert new.status_code == 200
    # Tokens issued before the change are refused; the one issued just after is not.
    assert_revoked(api, pair["access_token"])
    assert api.get("/me", token=new.json()["access_token"]).status_code == 200


def test_password_reset_by_emailed_token(api):
    user, pair = customer(api)
    asked = api.post("/auth/password-reset", json={"email": user["email"].upper()})
    unknown = api.post("/auth/password-reset", json={"email": "nobody-at-all@example.com"})
    assert asked.status_code == unknown.status_code == 202
    assert asked.json() == unknown.json()
    token = event_data_for(api.platform, "user.password_reset_requested", user["email"])[
        "reset_token"
    ]

    weak = api.post(
        "/auth/password-reset/confirm", json={"token": token, "new_password": "qwertyuiop"}
    )
    assert_problem(weak, 422)
    done = api.post(
        "/auth/password-reset/confirm",
        json={"token": token, "new_password": "a brand new passphrase"},
    )
    assert done.status_code == 204
    again = api.post(
        "/auth/password-reset/confirm",
        json={"token": token, "new_password": "yet another passphrase"},
    )
    assert assert_problem(again, 422)["field"] == "token"
    assert_problem(refresh(api, pair["refresh_token"]), 401)
    login = api.post(
        "/auth/login", json={"email": user["email"], "password": "a brand new passphrase"}
    )
    assert login.status_code == 200


def test_a_suspended_account_cannot_log_in_or_refresh(api):
    user, pair = customer(api)
    suspended = api.request(
        "PUT", f"/admin/users/{user['id']}/suspension", json={"reason": "fraud"}, token=api.admin
    )
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    assert_problem(refresh(api, pair["refresh_token"]), 401)
    assert_revoked(api, pair["access_token"])
    body = assert_problem(
        api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}), 403
    )
    assert "suspended" in body["detail"]
    # A wrong password still says only "wrong": suspension is not revealed to strangers.
    assert_problem(
        api.post("/auth/login", json={"email": user["email"], "password": "not it at all"}), 401
    )

    assert (
        api.delete(f"/admin/users/{user['id']}/suspension", token=api.admin).json()["status"]
        == "active"
    )
    assert (
        api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}).status_code
        == 200
    )


@pytest.mark.usefixtures("restore_signing_keys")
def test_signing_key_rotation_keeps_old_tokens_valid(api):
    user, pair = customer(api)
    old_kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    with api.platform.rpc() as rpc:
        # Too soon after the current key was made (tokens it signed could be cut short)...
        age_current_signing_key(api.platform)
        rotated = rpc.auth.rotate_signing_key()
    new_kid = rotated["kid"]
    assert {key["kid"] for key in rotated["jwks"]["keys"]} == {old_kid, new_kid}
    assert {key["kid"] for key in api.get("/auth/jwks").json()["keys"]} == {old_kid, new_kid}
    # A token from before the rotation still works; a new login is signed by the new key,
    # which the gateway fetches when it first sees its kid.
    assert api.get("/me", token=pair["access_token"]).status_code == 200
    fresh = api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}).json()
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
    eventually(lambda: _assert_status(api.get("/me", token=fresh["access_token"]), 200))


@pytest.mark.usefixtures("restore_signing_keys")
def test_rotating_again_too_soon_is_refused(api):
    from common.errors import Conflict

    with api.platform.rpc() as rpc:
        age_current_signing_key(api.platform)
        rpc.auth.rotate_signing_key()
        try:
            rpc.auth.rotate_signing_key()
        except Conflict as error:
            assert "younger" in str(error)
        else:
            raise AssertionError("a second rotation within a token lifetime was accepted")


def _assert_status(response, status):
    assert response.status_code == status, response.text


def test_an_unknown_user_id_in_a_valid_token_is_404_not_500(api):

    token = signed_with_the_services_key(api.platform, sub=str(uuid.uuid4()), scope="")
    assert_problem(api.get("/me", token=token), 404)
