"""Two-factor authentication with a real TOTP generator (pyotp, as an authenticator app
would compute the codes)."""

from __future__ import annotations

import time

import pyotp

from tests.support import assert_problem

PASSWORD = "a long enough password"


def enrol(api):
    user, token = api.platform.new_customer(PASSWORD)
    started = api.post("/me/mfa/totp", token=token)
    assert started.status_code == 201
    assert started.headers["Cache-Control"] == "no-store"
    enrolment = started.json()
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert "secret=" + enrolment["secret"] in enrolment["otpauth_uri"]
    totp = pyotp.TOTP(enrolment["secret"])
    confirmed = api.post("/me/mfa/totp/confirm", json={"code": totp.now()}, token=token)
    assert confirmed.status_code == 200, confirmed.text
    return user, token, totp, confirmed.json()["recovery_codes"]


def log_in(api, email, password=PASSWORD):
    return api.post("/auth/login", json={"email": email, "password": password})


def next_code(totp: pyotp.TOTP) -> str:
    """A code for the next 30-second step (the current one was just used, and a code
    works once); accepted because one step of clock drift is allowed."""
    return totp.at(time.time() + totp.interval)


def test_login_asks_for_the_second_factor(api):
    user, token, totp, recovery_codes = enrol(api)
    assert len(recovery_codes) == 10
    assert api.get("/me", token=token).json()["mfa_enabled"] is True

    challenge = log_in(api, user["email"])
    assert challenge.status_code == 200
    challenge = challenge.json()
    assert challenge["mfa_required"] is True
    assert "access_token" not in challenge

    wrong = api.post(
        "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": "000000"}
    )
    assert_problem(wrong, 401)
    tokens = api.post(
        "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": next_code(totp)}
    )
    assert tokens.status_code == 200, tokens.text
    assert api.get("/me", token=tokens.json()["access_token"]).status_code == 200
    # The challenge was used up.
    reused = api.post(
        "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": next_code(totp)}
    )
    assert_problem(reused, 401)


def test_a_totp_code_works_once(api):
    user, _, totp, _ = enrol(api)
    code = next_code(totp)
    first = log_in(api, user["email"]).json()["mfa_token"]
    assert api.post("/auth/login/mfa", json={"mfa_token": first, "code": code}).status_code == 200
    second = log_in(api, user["email"]).json()["mfa_token"]
    assert_problem(api.post("/auth/login/mfa", json={"mfa_token": second, "code": code}), 401)


def test_recovery_codes_are_single_use(api):
    user, token, _, recovery_codes = enrol(api)
    code = recovery_codes[0]
    challenge = log_in(api, user["email"]).json()["mfa_token"]
    used = api.post("/auth/login/mfa", json={"mfa_token": challenge, "code": code.upper()})
    assert used.status_code == 200
    challenge = log_in(api, user["email"]).json()["mfa_token"]
    assert_problem(api.post("/auth/login/mfa", json={"mfa_token": challenge, "code": code}), 401)
    # Replacing them invalidates the old set.
    regenerated = api.post(
        "/me/mfa/recovery-codes", json={"password": PASSWORD}, token=token
    ).json()
    assert set(regenerated["recovery_codes"]).isdisjoint(recovery_codes)
    challenge = log_in(api, user["email"]).json()["mfa_token"]
    assert_problem(
        api.post("/auth/login/mfa", json={"mfa_token": challenge, "code": recovery_codes[1]}), 401
    )


def test_enrolment_needs_a_correct_first_code(api):
    _, token = api.platform.new_customer()
    enrolment = api.post("/me/mfa/totp", token=token).json()
    wrong = api.post("/me/mfa/totp/confirm", json={"code": "123456"}, token=token)
    assert assert_problem(wrong, 422)["field"] == "code"
    assert_problem(api.post("/me/mfa/totp/confirm", json={"code": "12345"}, token=token), 400)
    assert api.get("/me", token=token).json()["mfa_enabled"] is False
    totp = pyotp.TOTP(enrolment["secret"])
    assert (
        api.post("/me/mfa/totp/confirm", json={"code": totp.now()}, token=token).status_code == 200
    )
    assert_problem(api.post("/me/mfa/totp", token=token), 409)


def test_confirming_without_starting_is_409(api):
    _, token = api.platform.new_customer()
    assert_problem(api.post("/me/mfa/totp/confirm", json={"code": "123456"}, token=token), 409)


def test_turning_mfa_off_needs_the_password(api):
    user, token, _, _ = enrol(api)
    assert_problem(
        api.post("/me/mfa/totp/disable", json={"password": "not the password"}, token=token), 401
    )
    assert (
        api.post("/me/mfa/totp/disable", json={"password": PASSWORD}, token=token).status_code
        == 204
    )
    assert "access_token" in log_in(api, user["email"]).json()


def test_mfa_guesses_count_towards_the_lockout(api):
    user, _, _, _ = enrol(api)
    challenge = log_in(api, user["email"]).json()["mfa_token"]
    statuses = [
        api.post("/auth/login/mfa", json={"mfa_token": challenge, "code": "000000"}).status_code
        for _ in range(4)
    ]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3] == 429


def test_the_totp_secret_is_stored_sealed(api):
    from sqlalchemy import text

    user, _, totp, _ = enrol(api)
    with api.platform.engine("auth").connect() as connection:
        stored = connection.scalar(
            text("SELECT totp_secret FROM users WHERE id = :id"), {"id": user["id"]}
        )
    assert totp.secret not in stored
    assert stored.startswith("v1:")
