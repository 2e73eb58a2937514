"""The cart through the gateway: priced by the catalog now, flags for what changed."""

from __future__ import annotations

import uuid

import pytest

from tests.support import assert_problem


def stocked_book(api, on_hand: int = 10, **fields) -> dict:
    product = api.create_product(**fields)
    response = api.request(
        "PUT", f"/products/{product['id']}/stock", json={"on_hand": on_hand}, token=api.admin
    )
    assert response.status_code == 200, response.text
    return product


def put_item(api, token, product_id, quantity):
    return api.request("PUT", f"/cart/items/{product_id}", json={"quantity": quantity}, token=token)


def test_stock_is_set_by_admins_and_availability_is_public(api):
    product = stocked_book(api, on_hand=7)
    stock = api.get(f"/products/{product['id']}/stock", token=api.admin).json()
    assert stock == {
        "product_id": product["id"],
        "on_hand": 7,
        "reserved": 0,
        "available": 7,
        "low_stock_threshold": 5,
    }
    assert api.get(f"/products/{product['id']}/availability").json() == {
        "product_id": product["id"],
        "available": 7,
        "in_stock": True,
    }
    _, customer = api.platform.new_customer()
    assert_problem(
        api.request("PUT", f"/products/{product['id']}/stock", json={"on_hand": 1}, token=customer),
        403,
    )
    assert_problem(
        api.request(
            "PUT", f"/products/{product['id']}/stock", json={"on_hand": -1}, token=api.admin
        ),
        400,
    )
    assert_problem(api.get(f"/products/{uuid.uuid4()}/availability"), 404)


def test_fill_change_and_empty_a_cart(api):
    first = stocked_book(api, price={"amount": 1500, "currency": "EUR"})
    second = stocked_book(api, price={"amount": 2500, "currency": "EUR"})
    _, token = api.platform.new_customer()
    empty = api.get("/cart", token=token).json()
    assert empty["items"] == [] and empty["subtotal"] is None

    put_item(api, token, first["id"], 2)
    cart = put_item(api, token, second["id"], 1).json()
    assert [line["product_id"] for line in cart["items"]] == [first["id"], second["id"]]
    assert cart["subtotal"] == {"amount": 5500, "currency": "EUR"}
    assert cart["item_count"] == 3
    assert cart["expires_at"] > cart["updated_at"]

    cart = put_item(api, token, first["id"], 1).json()  # a quantity is set, not added
    assert cart["subtotal"]["amount"] == 4000
    cart = api.delete(f"/cart/items/{second['id']}", token=token).json()
    assert [line["product_id"] for line in cart["items"]] == [first["id"]]
    assert_problem(api.delete(f"/cart/items/{second['id']}", token=token), 404)
    assert api.delete("/cart", token=token).status_code == 204
    assert api.get("/cart", token=token).json()["items"] == []


def test_price_changes_and_stock_problems_are_flagged(api):
    product = stocked_book(api, on_hand=5, price={"amount": 1000, "currency": "EUR"})
    _, token = api.platform.new_customer()
    put_item(api, token, product["id"], 4)
    api.patch(
        f"/products/{product['id']}",
        json={"price": {"amount": 1200, "currency": "EUR"}},
        token=api.admin,
    )
    api.request("PUT", f"/products/{product['id']}/stock", json={"on_hand": 2}, token=api.admin)
    line = api.get("/cart", token=token).json()["items"][0]
    assert set(line["flags"]) == {"price_changed", "insufficient_stock"}
    assert line["unit_price"]["amount"] == 1200
    assert line["price_when_added"]["amount"] == 1000
    api.request("PUT", f"/products/{product['id']}/stock", json={"on_hand": 0}, token=api.admin)
    assert "out_of_stock" in api.get("/cart", token=token).json()["items"][0]["flags"]
    api.delete(f"/products/{product['id']}", token=api.admin)
    assert api.get("/cart", token=token).json()["items"][0]["flags"] == ["unavailable"]


@pytest.mark.parametrize("quantity", [0, -1, 101, 1.5, "2", None])
def test_bad_quantities_are_400(api, quantity):
    product = stocked_book(api)
    _, token = api.platform.new_customer()
    assert_problem(put_item(api, token, product["id"], quantity), 400)


def test_more_than_in_stock_unknown_or_withdrawn_books(api):
    product = stocked_book(api, on_hand=3)
    _, token = api.platform.new_customer()
    body = assert_problem(put_item(api, token, product["id"], 4), 409)
    assert body["available"] == 3
    assert_problem(put_item(api, token, str(uuid.uuid4()), 1), 404)
    api.delete(f"/products/{product['id']}", token=api.admin)
    assert_problem(put_item(api, token, product["id"], 1), 409)


def test_carts_are_private(api):
    product = stocked_book(api)
    _, alice = api.platform.new_customer()
    _, bob = api.platform.new_customer()
    put_item(api, alice, product["id"], 1)
    assert api.get("/cart", token=bob).json()["items"] == []
    assert_problem(api.get("/cart"), 401)


def test_one_currency_per_cart(api):
    euros = stocked_book(api, price={"amount": 1000, "currency": "EUR"})
    pounds = stocked_book(api, price={"amount": 1000, "currency": "GBP"})
    _, token = api.platform.new_customer()
    put_item(api, token, euros["id"], 1)
    assert_problem(put_item(api, token, pounds["id"], 1), 422)
