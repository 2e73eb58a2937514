"""Reviews (only buyers, once) feeding search's rating facet and sort; recommendations
learned from real purchases through the gateway, trained on demand."""

from __future__ import annotations

import uuid

from tests.support import assert_problem, checkout, eventually, fill, shopper, stocked_book


def buy(api, token, address_id, *books):
    for book in books:
        fill(api, token, book)
    placed = checkout(api, token, address_id)
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "PAID"


def review(api, token, book, rating, **fields):
    return api.post(
        f"/products/{book['id']}/reviews",
        json={"rating": rating, **fields},
        token=token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def test_only_buyers_review_once_and_ratings_reach_search(api):
    liked = stocked_book(api, amount=1000)
    api.patch(
        f"/products/{liked['id']}",
        json={"title": "Reviewed Lighthouse"},
        token=api.admin,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    other = api.create_product(title="Unreviewed Lighthouse")
    token, address_id = shopper(api)
    stranger, _ = shopper(api)

    body = assert_problem(review(api, stranger, liked, 5), 403)
    assert "bought" in body["detail"]
    buy(api, token, address_id, liked)
    created = review(api, token, liked, 4, title="Good", body="  Worth it.  ")
    assert created.status_code == 201, created.text
    assert created.json()["body"] == "Worth it."
    assert_problem(review(api, token, liked, 5), 409)
    assert_problem(review(api, token, liked, 6), 400)
    assert_problem(review(api, token, {"id": str(uuid.uuid4())}, 5), 404)

    page = api.get(f"/products/{liked['id']}/reviews").json()
    assert page["rating"] == {"average": 4.0, "count": 1}
    assert [item["title"] for item in page["items"]] == ["Good"]

    def rated_in_search():
        found = api.get("/search", params={"q": "lighthouse", "sort": "rating"}).json()
        assert [hit["id"] for hit in found["items"]] == [liked["id"], other["id"]]
        assert found["items"][0]["rating"] == {"average": 4.0, "count": 1}
        rating = {bucket["value"]: bucket["count"] for bucket in found["facets"]["rating"]}
        assert rating == {4: 1, 3: 1, 2: 1, 1: 1}
        return found

    eventually(rated_in_search)
    only_rated = api.get("/search", params={"q": "lighthouse", "rating_min": 4}).json()
    assert [hit["id"] for hit in only_rated["items"]] == [liked["id"]]


def test_recommendations_follow_purchases_after_training(api):
    books = {name: stocked_book(api) for name in ("a", "b", "c", "d", "e")}
    first, first_address = shopper(api)
    second, second_address = shopper(api)
    newcomer, _ = shopper(api)
    buy(api, first, first_address, books["a"], books["b"], books["c"])
    buy(api, second, second_address, books["a"], books["b"])
    buy(api, second, second_address, books["d"])

    def purchases_recorded():
        with api.platform.rpc() as rpc:
            assert rpc.search.recommender_status()["interactions_now"] == 6

    eventually(purchases_recorded)
    before = api.get(f"/products/{books['a']['id']}/also-bought").json()
    assert before == {
        "product_id": books["a"]["id"],
        "items": [],
        "model_version": None,
        "trained_at": None,
    }

    with api.platform.rpc() as rpc:
        trained = rpc.search.train_recommender()
        status = rpc.search.recommender_status()
    assert trained["model_version"] == status["model_version"]
    assert status["interactions"] == 6 and status["users"] == 2 and status["items"] == 4
    assert status["trained_at"]

    also = api.get(f"/products/{books['a']['id']}/also-bought", params={"limit": 4}).json()
    assert also["model_version"] == status["model_version"]
    ids = [item["id"] for item in also["items"]]
    assert ids[0] == books["b"]["id"]  # bought with "a" by both customers
    assert set(ids[1:3]) == {books["c"]["id"], books["d"]["id"]}
    assert books["a"]["id"] not in ids
    assert [item["reason"] for item in also["items"]][:3] == ["also_bought"] * 3

    mine = api.get("/recommendations", token=second).json()
    mine_ids = [item["id"] for item in mine["items"]]
    assert mine_ids[0] == books["c"]["id"]  # what the similar customer also bought
    assert not {books["a"]["id"], books["b"]["id"], books["d"]["id"]} & set(mine_ids)

    fresh = api.get("/recommendations", token=newcomer).json()
    assert [item["reason"] for item in fresh["items"]] == ["popular"] * 4
    # Bought by both customers (tied), so first, in either order.
    assert {item["id"] for item in fresh["items"][:2]} == {books["a"]["id"], books["b"]["id"]}

    # A new book nobody bought yet: popular books instead.
    new_book = api.create_product(title="Brand New")

    def indexed_new_book():
        response = api.get(f"/products/{new_book['id']}/also-bought")
        assert response.status_code == 200, response.text
        return response.json()

    newest = eventually(indexed_new_book)
    assert [item["reason"] for item in newest["items"]] == ["popular"] * 4
    assert_problem(api.get(f"/products/{uuid.uuid4()}/also-bought"), 404)
    assert_problem(api.get("/recommendations"), 401)
