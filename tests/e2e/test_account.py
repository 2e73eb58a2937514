"""The caller's own account: profile, address book, deletion; and that one customer can
never see or touch another's."""

from __future__ import annotations

import uuid

import pytest

from tests.support import assert_problem, outbox_events

PASSWORD = "a long enough password"


def address(**fields):
    return {
        "recipient": "Ada Lovelace",
        "line1": "12 St James's Square",
        "city": "London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
        **fields,
    }


def test_profile_update_is_a_merge_patch(api):
    _, token = api.platform.new_customer()
    changed = api.patch(
        "/me",
        json={"name": "Augusta Ada King", "phone": "+442071234567"},
        headers={"Content-Type": "application/merge-patch+json"},
        token=token,
    )
    assert changed.status_code == 200
    assert changed.json()["name"] == "Augusta Ada King"
    assert changed.json()["phone"] == "+442071234567"
    cleared = api.patch("/me", json={"phone": None}, token=token).json()
    assert cleared["phone"] is None
    assert cleared["name"] == "Augusta Ada King"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"phone": "020 7123 4567"},
        {"phone": "+0123"},
        {"name": ""},
        {"email": "new@example.com"},  # the address is not changed through the profile
        {"roles": ["admin"]},
    ],
)
def test_bad_profile_updates_are_400(api, body):
    _, token = api.platform.new_customer()
    assert_problem(api.patch("/me", json=body, token=token), 400)


def test_address_book(api):
    _, token = api.platform.new_customer()
    assert api.get("/me/addresses", token=token).json() == {"items": [], "next_cursor": None}

    home = api.post("/me/addresses", json=address(label="Home"), token=token)
    assert home.status_code == 201
    assert home.headers["Location"].endswith(home.json()["id"])
    home = home.json()
    assert home["is_default"] is True, "the first address becomes the default"

    work = api.post("/me/addresses", json=address(label="Work", city="Bath"), token=token).json()
    assert work["is_default"] is False
    made_default = api.patch(f"/me/addresses/{work['id']}", json={"is_default": True}, token=token)
    assert made_default.json()["is_default"] is True
    listed = api.get("/me/addresses", token=token).json()["items"]
    assert [item["label"] for item in listed] == ["Work", "Home"]
    assert [item["is_default"] for item in listed] == [True, False]

    # Un-defaulting the default is refused: choose another one instead.
    assert_problem(
        api.patch(f"/me/addresses/{work['id']}", json={"is_default": False}, token=token), 409
    )

    edited = api.patch(
        f"/me/addresses/{home['id']}", json={"line2": "Flat 3", "label": None}, token=token
    )
    assert edited.json()["line2"] == "Flat 3"
    assert edited.json()["label"] is None

    assert api.delete(f"/me/addresses/{work['id']}", token=token).status_code == 204
    remaining = api.get("/me/addresses", token=token).json()["items"]
    assert [(item["id"], item["is_default"]) for item in remaining] == [(home["id"], True)]
    assert_problem(api.get(f"/me/addresses/{work['id']}", token=token), 404)


@pytest.mark.parametrize(
    "fields",
    [
        {"country": "gb"},
        {"country": "GBR"},
        {"postal_code": ""},
        {"recipient": None},
        {"phone": "12345"},
        {"owner": "someone else"},
    ],
)
def test_bad_addresses_are_400(api, fields):
    _, token = api.platform.new_customer()
    assert_problem(api.post("/me/addresses", json=address(**fields), token=token), 400)


def test_missing_required_address_fields_are_400(api):
    _, token = api.platform.new_customer()
    body = address()
    del body["city"]
    assert_problem(api.post("/me/addresses", json=body, token=token), 400)


def test_an_address_book_has_a_limit(api):
    _, token = api.platform.new_customer()
    for number in range(20):
        assert (
            api.post("/me/addresses", json=address(label=f"A{number}"), token=token).status_code
            == 201
        )
    assert_problem(api.post("/me/addresses", json=address(), token=token), 409)


def test_adding_an_address_is_idempotent(api):
    _, token = api.platform.new_customer()
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post("/me/addresses", json=address(), headers=headers, token=token)
    again = api.post("/me/addresses", json=address(), headers=headers, token=token)
    assert first.json() == again.json()
    assert len(api.get("/me/addresses", token=token).json()["items"]) == 1


def test_one_customer_cannot_see_or_touch_anothers_addresses(api):
    _, alice = api.platform.new_customer()
    _, mallory = api.platform.new_customer()
    alices = api.post("/me/addresses", json=address(), token=alice).json()
    path = f"/me/addresses/{alices['id']}"
    assert_problem(api.get(path, token=mallory), 404)
    assert_problem(api.patch(path, json={"city": "Elsewhere"}, token=mallory), 404)
    assert_problem(api.delete(path, token=mallory), 404)
    assert api.get("/me/addresses", token=mallory).json()["items"] == []
    assert api.get(path, token=alice).json() == alices


def test_deleting_the_account_anonymises_it(api):
    user, token = api.platform.new_customer(PASSWORD)
    api.post("/me/addresses", json=address(), token=token)
    pair = api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}).json()

    assert_problem(api.post("/me/deletion", json={"password": "not my password"}, token=token), 401)
    assert api.post("/me/deletion", json={"password": PASSWORD}, token=token).status_code == 204

    assert_problem(api.get("/me", token=token), 404)
    assert_problem(
        api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}), 401
    )
    assert_problem(api.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)
    seen_by_admin = api.get(f"/admin/users/{user['id']}", token=api.admin).json()
    assert seen_by_admin["status"] == "deleted"
    assert user["email"] not in str(seen_by_admin)
    assert seen_by_admin["name"] is None
    deleted = outbox_events(api.platform, "auth", "user.deleted")
    assert [event["data"]["user_id"] for event in deleted] == [user["id"]]
    # The address is free again.
    again = {"email": user["email"], "password": PASSWORD, "accept_terms": True}
    assert api.post("/auth/register", json=again).status_code == 202
    assert (
        api.post("/auth/login", json={"email": user["email"], "password": PASSWORD}).status_code
        == 200
    )


def test_secrets_never_appear_in_the_logs(api):
    user, token = api.platform.new_customer(PASSWORD)
    api.post("/auth/login", json={"email": user["email"], "password": "a wrong guess entirely"})
    enrolment = api.post("/me/mfa/totp", token=token).json()
    logs = "".join(
        path.read_text(errors="replace")
        for path in api.platform.log_dir.rglob("*")
        if path.is_file()
    )
    assert PASSWORD not in logs
    assert "a wrong guess entirely" not in logs
    assert token not in logs
    assert enrolment["secret"] not in logs
