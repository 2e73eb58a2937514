"""Deletion reaches every copy: a deleted account's pending emails stop and notify keeps
no address of it; a withdrawn book leaves no suggestion behind (issue 16)."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.support import checkout, eventually, fill, shopper, stocked_book

PASSWORD = "a long enough password"  # tests/harness.py new_customer


def _deliveries(platform, user_id: str) -> list[dict]:
    with platform.engine("notify").connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text(
                    "SELECT id, channel, status, recipient, content, last_error "
                    "FROM deliveries WHERE user_id = :user_id"
                ),
                {"user_id": user_id},
            ).mappings()
        ]


def test_deleting_an_account_stops_its_pending_emails_and_scrubs_its_address(api):
    platform = api.platform
    platform.smtp.stop()  # the confirmation email keeps failing: it waits, retried
    try:
        book = stocked_book(api, amount=2000)
        token, address_id = shopper(api)
        me = api.get("/me", token=token).json()
        fill(api, token, book)
        assert checkout(api, token, address_id).status_code == 201

        def waiting() -> list[dict]:
            found = _deliveries(platform, me["id"])
            assert found and found[0]["recipient"] == me["email"], found
            return found

        eventually(waiting)
        deleted = api.post("/me/deletion", json={"password": PASSWORD}, token=token)
        assert deleted.status_code == 204, deleted.text

        def forgotten() -> list[dict]:
            found = _deliveries(platform, me["id"])
            assert found and all(d["status"] == "skipped" for d in found), found
            return found

        for delivery in eventually(forgotten):
            assert delivery["recipient"] is None and delivery["content"] == {}
            assert delivery["last_error"] == "the account was deleted"
    finally:
        platform.smtp.start()
    # Nothing is sent to the old address once the mail server is back.
    with platform.engine("notify").connect() as connection:
        assert not connection.scalar(
            text("SELECT count(*) FROM deliveries WHERE recipient = :email"),
            {"email": me["email"]},
        )


def test_a_withdrawn_book_leaves_no_suggestion(api):
    word = f"zq{uuid.uuid4().hex[:8]}"
    book = api.create_product(title=f"The {word.capitalize()} Affair")

    def suggested() -> dict:
        answer = api.get("/search/suggest", params={"q": word[:6]}).json()
        assert word in answer["completions"], answer
        assert [product["id"] for product in answer["products"]] == [book["id"]], answer
        return answer

    eventually(suggested)
    assert api.delete(f"/products/{book['id']}", token=api.admin).status_code == 204

    def gone() -> None:
        answer = api.get("/search/suggest", params={"q": word[:6]}).json()
        assert answer["completions"] == [] and answer["products"] == [], answer

    eventually(gone)
