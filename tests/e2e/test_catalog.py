"""The catalog through the gateway over HTTP, with the real services behind it."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import assert_problem, book, unique_isbn

MISSING = "00000000-0000-4000-8000-000000000000"


# --- reading ---


def test_product_has_the_documented_shape(api):
    category = api.create_category()
    created = api.create_product(
        isbn13="978-0-262-03384-8",
        title="  Introduction   to Algorithms ",
        authors=["Thomas H. Cormen", "Charles E. Leiserson"],
        category_id=category["id"],
        dimensions_mm=[203, 229, 51],
        attributes={"publisher": "MIT Press", "pages": 1312},
    )
    assert created["isbn13"] == "9780262033848"  # normalised
    assert created["title"] == "Introduction to Algorithms"
    assert created["price"] == {"amount": 1299, "currency": "EUR"}
    assert created["category_id"] == category["id"]
    assert created["version"] == 1
    assert created["created_at"].endswith("Z")
    assert api.get(f"/products/{created['id']}").json() == created


def test_listing_pages_through_every_product_once_in_title_order(api):
    titles = [f"Book {letter}" for letter in "EBDAFCG"]
    for title in titles:
        api.create_product(title=title)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/products", params=params).json()
        pages += 1
        seen += [item["title"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(titles)
    assert pages == 3


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("price", lambda p: p["price"]["amount"], False),
        ("-price", lambda p: p["price"]["amount"], True),
        ("-title", lambda p: p["title"], True),
        ("created_at", lambda p: p["created_at"], False),
        ("-created_at", lambda p: p["created_at"], True),
    ],
)
def test_listing_sorts_stably_across_pages(api, sort, key, reverse):
    # Equal prices on purpose: the id breaks ties, so no item is lost between pages.
    for amount in (500, 1500, 500, 999, 1500, 500):
        api.create_product(price={"amount": amount, "currency": "EUR"})
    items = []
    params = {"limit": 2, "sort": sort}
    while True:
        page = api.get("/products", params=params).json()
        items += page["items"]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert len({item["id"] for item in items}) == 6
    assert [key(item) for item in items] == sorted((key(item) for item in items), reverse=reverse)


def test_category_filter_includes_subcategories(api):
    fiction = api.create_category("fiction", name="Fiction")
    fantasy = api.create_category("fantasy", name="Fantasy", parent_id=fiction["id"])
    history = api.create_category("history", name="History")
    in_fiction = api.create_product(category_id=fiction["id"])
    in_fantasy = api.create_product(category_id=fantasy["id"])
    api.create_product(category_id=history["id"])
    api.create_product()

    assert {p["id"] for p in api.all_products(category=fiction["id"])} == {
        in_fiction["id"],
        in_fantasy["id"],
    }
    assert [p["id"] for p in api.all_products(category=fantasy["id"])] == [in_fantasy["id"]]
    assert api.all_products(category=MISSING) == []


def test_author_and_price_filters(api):
    eco = api.create_product(authors=["Umberto Eco"], price={"amount": 1200, "currency": "EUR"})
    api.create_product(authors=["Italo Calvino"], price={"amount": 1200, "currency": "EUR"})
    cheap = api.create_product(authors=["Umberto Eco"], price={"amount": 300, "currency": "EUR"})

    by_author = api.all_products(author="  umberto   ECO ")
    assert {p["id"] for p in by_author} == {eco["id"], cheap["id"]}
    in_range = api.all_products(author="Umberto Eco", price_min=1000, price_max=1200)
    assert [p["id"] for p in in_range] == [eco["id"]]


def test_price_range_upside_down_is_400(api):
    body = assert_problem(api.get("/products", params={"price_min": 10, "price_max": 5}), 400)
    assert body["parameter"] == "price_min"


def test_cursor_from_another_query_is_400(api):
    for _ in range(3):
        api.create_product()
    cursor = api.get("/products", params={"limit": 1}).json()["next_cursor"]
    body = assert_problem(
        api.get("/products", params={"limit": 1, "sort": "-price", "cursor": cursor}), 400
    )
    assert "different query" in body["detail"]
    assert_problem(api.get("/products", params={"cursor": "bm90LWEtY3Vyc29y"}), 400)


def test_etag_and_if_none_match(api):
    product = api.create_product()
    first = api.get(f"/products/{product['id']}")
    assert first.headers["ETag"] == '"1"'
    unchanged = api.get(f"/products/{product['id']}", headers={"If-None-Match": '"1"'})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == '"1"'
    api.patch(f"/products/{product['id']}", json={"title": "New"}, token=api.admin)
    changed = api.get(f"/products/{product['id']}", headers={"If-None-Match": '"1"'})
    assert changed.status_code == 200
    assert changed.headers["ETag"] == '"2"'


def test_unknown_and_malformed_ids(api):
    assert_problem(api.get(f"/products/{MISSING}"), 404)
    assert_problem(api.get("/products/12345"), 400)
    assert_problem(api.get(f"/categories/{MISSING}"), 404)
    assert_problem(api.get("/categories/not-a-uuid"), 400)


# --- creating ---


def test_create_answers_location_and_etag(api):
    response = api.post("/products", json=book(), token=api.admin)
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/products/{response.json()['id']}"
    assert response.headers["ETag"] == '"1"'


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"isbn13": "9780262033847"}, "isbn13"),  # wrong check digit
        ({"price": {"amount": 100, "currency": "XYZ"}}, "price.currency"),
        ({"title": "   "}, "title"),
        ({"authors": ["A. Author", "a. author"]}, "authors"),
        ({"publication_year": 2099}, "publication_year"),
        ({"category_id": MISSING}, "category_id"),
    ],
)
def test_rule_breaking_books_are_422_naming_the_field(api, fields, field):
    body = assert_problem(api.post("/products", json=book(**fields), token=api.admin), 422)
    assert body["field"] == field
    assert body["type"] == "urn:bookstore:problem:invalid-input"
    assert api.all_products() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"price": {"amount": 0, "currency": "EUR"}},
        {"price": {"amount": -5, "currency": "EUR"}},
        {"price": {"amount": 10.5, "currency": "EUR"}},
        {"price": {"amount": 10**12, "currency": "EUR"}},
        {"isbn13": "12345"},
        {"authors": []},
        {"title": "x" * 501},
        {"dimensions_mm": [100, 200]},
        {"unknown": "field"},
    ],
)
def test_malformed_books_are_400(api, fields):
    assert_problem(api.post("/products", json=book(**fields), token=api.admin), 400)


def test_duplicate_isbn_is_409_and_names_the_existing_book(api):
    isbn = unique_isbn()
    first = api.create_product(isbn13=isbn)
    body = assert_problem(api.post("/products", json=book(isbn13=isbn), token=api.admin), 409)
    assert body["existing_product_id"] == first["id"]


def test_only_admins_may_change_the_catalog(api):
    _, customer = api.platform.new_customer()
    product = api.create_product()
    assert_problem(api.post("/products", json=book()), 401)
    assert_problem(api.post("/products", json=book(), token=customer), 403)
    assert_problem(
        api.patch(f"/products/{product['id']}", json={"title": "x"}, token=customer), 403
    )
    assert_problem(api.delete(f"/products/{product['id']}", token=customer), 403)
    assert_problem(api.post("/categories", json={"slug": "x", "name": "X"}, token=customer), 403)
    assert api.get(f"/products/{product['id']}").json()["title"] == product["title"]


# --- idempotency ---


def test_replayed_create_returns_the_first_product(api):
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    body = book()
    first = api.post("/products", json=body, token=api.admin, headers=headers)
    replay = api.post("/products", json=body, token=api.admin, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert len(api.all_products()) == 1


def test_concurrent_replays_create_one_product(api):
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    body = book()
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda _: api.post("/products", json=body, token=api.admin, headers=headers),
                range(8),
            )
        )
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(api.all_products()) == 1


def test_same_key_with_a_different_request_is_422(api):
    headers = {"Idempotency-Key": "key-1"}
    assert api.post("/products", json=book(), token=api.admin, headers=headers).status_code == 201
    body = assert_problem(api.post("/products", json=book(), token=api.admin, headers=headers), 422)
    assert body["type"] == "urn:bookstore:problem:idempotency-key-reused"
    assert len(api.all_products()) == 1


def test_a_failed_request_does_not_burn_its_key(api):
    headers = {"Idempotency-Key": "key-2"}
    broken = book(isbn13="9780262033847")
    assert api.post("/products", json=broken, token=api.admin, headers=headers).status_code == 422
    fixed = book()
    assert api.post("/products", json=fixed, token=api.admin, headers=headers).status_code == 201


# --- updating ---


def test_merge_patch_changes_only_what_it_names(api):
    product = api.create_product(attributes={"pages": 100, "language": "en"})
    response = api.patch(
        f"/products/{product['id']}",
        json={
            "price": {"amount": 999, "currency": "EUR"},
            "description": None,
            "attributes": {"pages": 120, "language": None},
        },
        token=api.admin,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["price"]["amount"] == 999
    assert updated["description"] is None
    assert updated["attributes"] == {"pages": 120}
    assert updated["title"] == product["title"]
    assert updated["version"] == 2
    assert response.headers["ETag"] == '"2"'


def test_a_patch_that_changes_nothing_keeps_the_version(api):
    product = api.create_product()
    response = api.patch(
        f"/products/{product['id']}", json={"title": product["title"]}, token=api.admin
    )
    assert response.json()["version"] == 1


def test_if_match_guards_against_lost_updates(api):
    product = api.create_product()
    url = f"/products/{product['id']}"
    ok = api.patch(url, json={"title": "First"}, token=api.admin, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    stale = api.patch(url, json={"title": "Second"}, token=api.admin, headers={"If-Match": '"1"'})
    assert assert_problem(stale, 412)["current_version"] == 2
    assert_problem(
        api.patch(url, json={"title": "x"}, token=api.admin, headers={"If-Match": "1"}), 412
    )
    assert api.get(url).json()["title"] == "First"


def test_concurrent_patches_each_get_their_own_version(api):
    product = api.create_product()
    url = f"/products/{product['id']}"
    with ThreadPoolExecutor(6) as pool:
        responses = list(
            pool.map(
                lambda n: api.patch(url, json={"title": f"Title {n}"}, token=api.admin),
                range(6),
            )
        )
    assert sorted(response.json()["version"] for response in responses) == [2, 3, 4, 5, 6, 7]


def test_update_refusals(api):
    product = api.create_product()
    other = api.create_product()
    url = f"/products/{product['id']}"
    assert_problem(api.patch(url, json={}, token=api.admin), 400)
    assert_problem(api.patch(url, json={"isbn13": other["isbn13"]}, token=api.admin), 409)
    assert_problem(api.patch(url, json={"category_id": MISSING}, token=api.admin), 422)
    assert_problem(api.patch(f"/products/{MISSING}", json={"title": "x"}, token=api.admin), 404)
    assert api.get(url).json() == product


# --- withdrawing ---


def test_deleted_products_disappear_and_free_their_isbn(api):
    product = api.create_product()
    url = f"/products/{product['id']}"
    assert_problem(api.delete(url, token=api.admin, headers={"If-Match": '"9"'}), 412)
    response = api.delete(url, token=api.admin)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(api.get(url), 404)
    assert_problem(api.delete(url, token=api.admin), 404)
    assert api.all_products() == []
    assert api.create_product(isbn13=product["isbn13"])["id"] != product["id"]


# --- categories ---


def test_categories_list_by_name_and_page(api):
    for name in ("Poetry", "History", "Art", "Science"):
        api.create_category(name=name)
    first = api.get("/categories", params={"limit": 3}).json()
    assert [c["name"] for c in first["items"]] == ["Art", "History", "Poetry"]
    rest = api.get("/categories", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [c["name"] for c in rest["items"]] == ["Science"]
    assert rest["next_cursor"] is None


def test_category_refusals(api):
    api.create_category("poetry")
    assert_problem(
        api.post("/categories", json={"slug": "poetry", "name": "P"}, token=api.admin), 409
    )
    assert_problem(
        api.post("/categories", json={"slug": "Not A Slug", "name": "P"}, token=api.admin), 400
    )
    assert_problem(
        api.post(
            "/categories",
            json={"slug": "orphan", "name": "O", "parent_id": MISSING},
            token=api.admin,
        ),
        422,
    )


def test_nul_characters_are_refused_everywhere(api):
    assert_problem(api.post("/products", json=book(title="Bad\u0000Title"), token=api.admin), 400)
    assert_problem(
        api.post("/products", json=book(attributes={"publisher": "x\u0000"}), token=api.admin),
        400,
    )
    assert_problem(api.get("/products", params={"author": "\u0000"}), 400)
    assert api.all_products() == []


def test_price_filters_beyond_any_price_are_400(api):
    assert_problem(api.get("/products", params={"price_min": 10**23}), 400)
    assert_problem(api.get("/products", params={"price_max": 100_000_001}), 400)


def test_bodies_without_a_length_are_411(api):
    def chunks():  # chunked transfer encoding: no Content-Length
        yield b'{"title": "'
        yield b"x" * 100_000
        yield b'"}'

    response = api.post(
        "/products", data=chunks(), token=api.admin, headers={"Content-Type": "application/json"}
    )
    assert "Content-Length" in assert_problem(response, 411)["detail"]
    assert api.all_products() == []
