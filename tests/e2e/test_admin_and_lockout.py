"""Administrators manage accounts and read the audit trail; failed logins slow down and
then lock accounts and addresses."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tests.support import assert_problem, eventually

PASSWORD = "a long enough password"


def log_in(api, email, password=PASSWORD, ip=None):
    headers = {"X-Forwarded-For": ip} if ip else {}
    return api.post("/auth/login", json={"email": email, "password": password}, headers=headers)


def test_customers_cannot_use_admin_endpoints(api):
    user, token = api.platform.new_customer()
    for method, path, body in [
        ("GET", "/admin/users", None),
        ("GET", f"/admin/users/{user['id']}", None),
        ("PUT", f"/admin/users/{user['id']}/roles", {"roles": ["customer", "admin"]}),
        ("PUT", f"/admin/users/{user['id']}/suspension", {"reason": "x"}),
        ("GET", "/admin/audit-events", None),
    ]:
        assert_problem(api.request(method, path, json=body, token=token), 403)
    assert api.get("/me", token=token).json()["roles"] == ["customer"]


def test_admins_list_and_filter_users(api):
    created = [api.platform.new_customer()[0] for _ in range(3)]
    page = api.get("/admin/users", params={"limit": 2}, token=api.admin).json()
    assert len(page["items"]) == 2
    rest = api.get(
        "/admin/users", params={"limit": 2, "cursor": page["next_cursor"]}, token=api.admin
    ).json()
    seen = [user["id"] for user in page["items"] + rest["items"]]
    assert len(seen) == len(set(seen)) == 4  # three customers and the admin
    assert [user["id"] for user in created][::-1] == seen[:3], "newest first"

    by_email = api.get(
        "/admin/users", params={"email": created[0]["email"].upper()}, token=api.admin
    )
    assert [user["id"] for user in by_email.json()["items"]] == [created[0]["id"]]
    admins = api.get("/admin/users", params={"role": "admin"}, token=api.admin).json()["items"]
    assert [user["email"] for user in admins] == [api.platform.admin.email]
    assert_problem(api.get("/admin/users", params={"status": "asleep"}, token=api.admin), 400)
    other_query = api.get(
        "/admin/users", params={"role": "customer", "cursor": page["next_cursor"]}, token=api.admin
    )
    assert_problem(other_query, 400)


def test_role_changes_revoke_the_tokens_that_carry_the_old_ones(api):
    user, token = api.platform.new_customer(PASSWORD)
    pair = log_in(api, user["email"]).json()
    assert_problem(api.get("/admin/users", token=pair["access_token"]), 403)
    changed = api.request(
        "PUT",
        f"/admin/users/{user['id']}/roles",
        json={"roles": ["customer", "admin"]},
        token=api.admin,
    )
    assert changed.status_code == 200
    assert changed.json()["roles"] == ["admin", "customer"]
    # Tokens issued before carry the old scopes: refused, once the gateway has polled.
    eventually(lambda: assert_problem(api.get("/me", token=token), 401))
    assert_problem(api.get("/me", token=pair["access_token"]), 401)
    # The session itself lives on: a refresh gives a token with the new scopes.
    refreshed = api.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert api.get("/admin/users", token=refreshed.json()["access_token"]).status_code == 200
    fresh = log_in(api, user["email"]).json()["access_token"]
    assert api.get("/admin/users", token=fresh).status_code == 200

    for bad in ({"roles": []}, {"roles": ["owner"]}, {"roles": ["admin", "admin"]}):
        assert_problem(
            api.request("PUT", f"/admin/users/{user['id']}/roles", json=bad, token=api.admin), 400
        )
    missing = api.request(
        "PUT", f"/admin/users/{uuid.uuid4()}/roles", json={"roles": ["customer"]}, token=api.admin
    )
    assert_problem(missing, 404)


def test_the_last_admin_cannot_be_demoted_or_suspended(api):
    admin_id = api.platform.admin.id
    demote = api.request(
        "PUT", f"/admin/users/{admin_id}/roles", json={"roles": ["customer"]}, token=api.admin
    )
    assert_problem(demote, 409)
    assert_problem(
        api.request(
            "PUT", f"/admin/users/{admin_id}/suspension", json={"reason": "x"}, token=api.admin
        ),
        409,
    )


def test_the_audit_trail_records_who_did_what_from_where(api):
    user, _ = api.platform.new_customer(PASSWORD)
    log_in(api, user["email"], "a wrong password", ip="198.51.100.7")
    log_in(api, user["email"], ip="198.51.100.7")
    api.request(
        "PUT",
        f"/admin/users/{user['id']}/suspension",
        json={"reason": "testing"},
        headers={"X-Request-ID": "audit-test-1"},
        token=api.admin,
    )
    api.get("/me", token="not-a-token", headers={"X-Forwarded-For": "203.0.113.9"})

    def trail():
        entries = api.get("/admin/audit-events", token=api.admin).json()["items"]
        assert any(entry["action"] == "token.refused" for entry in entries)
        return entries

    entries = eventually(trail)
    about_user = api.get(
        "/admin/audit-events", params={"user_id": user["id"]}, token=api.admin
    ).json()
    actions = [entry["action"] for entry in about_user["items"]]
    assert actions[:3] == ["user.suspended", "login.succeeded", "login.failed"]
    failed = about_user["items"][2]
    assert failed["client_ip"] == "198.51.100.7"
    assert failed["actor_id"] is None
    suspension = about_user["items"][0]
    assert suspension["actor_id"] == api.platform.admin.id
    assert suspension["correlation_id"] == "audit-test-1"
    assert suspension["details"]["reason"] == "testing"
    refused = next(entry for entry in entries if entry["action"] == "token.refused")
    assert refused["client_ip"] == "203.0.113.9"
    assert refused["details"]["reason"] == "invalid"
    assert PASSWORD not in str(entries)
    only_logins = api.get("/admin/audit-events", params={"action": "login.failed"}, token=api.admin)
    assert {entry["action"] for entry in only_logins.json()["items"]} == {"login.failed"}


def test_failed_logins_slow_down_then_lock_the_account(api):
    user, _ = api.platform.new_customer(PASSWORD)
    statuses = [log_in(api, user["email"], "wrong guess number one").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    slowed = log_in(api, user["email"])  # even the right password must wait now
    body = assert_problem(slowed, 429)
    assert 1 <= int(slowed.headers["Retry-After"]) <= 2
    assert body["type"].endswith("too-many-attempts")

    # Nine failures inside the window (set directly, instead of sleeping through the
    # growing delays), one more locks the account.
    with api.platform.engine("auth").begin() as connection:
        connection.execute(
            text(
                "UPDATE login_throttles SET failures = 9, "
                "last_failure_at = now() - interval '1 minute' WHERE key = :key"
            ),
            {"key": f"account:{user['email']}"},
        )
    assert_problem(log_in(api, user["email"], "wrong guess number ten"), 401)
    locked = log_in(api, user["email"], ip="192.0.2.44")  # from anywhere, right password
    assert_problem(locked, 429)
    assert int(locked.headers["Retry-After"]) > 800


def test_unknown_addresses_are_throttled_exactly_like_real_ones(api):
    user, _ = api.platform.new_customer(PASSWORD)
    ghost = f"ghost-{uuid.uuid4().hex[:8]}@example.com"
    real = [log_in(api, user["email"], "wrong guess again").status_code for _ in range(4)]
    fake = [log_in(api, ghost, "wrong guess again").status_code for _ in range(4)]
    assert real == fake == [401, 401, 401, 429]


@pytest.mark.timeout(180)
def test_many_accounts_failing_from_one_address_lock_the_address(api):
    user, _ = api.platform.new_customer(PASSWORD)
    attacker = "203.0.113.66"
    statuses = [
        log_in(api, f"victim-{number}@example.com", "guessing", ip=attacker).status_code
        for number in range(50)
    ]
    assert statuses == [401] * 50
    assert_problem(log_in(api, user["email"], ip=attacker), 429)
    # The account itself is fine from elsewhere: the attacker's address is what is locked.
    assert log_in(api, user["email"], ip="198.51.100.20").status_code == 200
