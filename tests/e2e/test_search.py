"""Search through the gateway, on the real services: the index follows catalog events,
ranks, filters, counts facets, pages with cursors, corrects typos, suggests, refuses
nonsense with 400s and never answers bad text with a 500."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from svc_search.backends import postgres
from svc_search.query import parse_search
from tests.support import assert_problem, bookstore_cli, eventually


def search(api, **params):
    response = api.get("/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def indexed(api, product_id, **params):
    """Waits until a search finds the product (the index is fed by events)."""

    def check():
        ids = [hit["id"] for hit in search(api, limit=100, **params)["items"]]
        assert product_id in ids
        return ids

    return eventually(check)


def test_words_rank_filter_count_and_page(api):
    fiction = api.create_category(name="Fiction")
    crime = api.create_category(name="Crime", parent_id=fiction["id"])
    rose = api.create_product(
        title="The Name of the Rose",
        authors=["Umberto Eco"],
        category_id=crime["id"],
        price={"amount": 1299, "currency": "EUR"},
    )
    garden = api.create_product(
        title="A Garden Year",
        authors=["Monty Don"],
        description="Roses, tulips and the rest of the garden, month by month.",
        price={"amount": 2599, "currency": "EUR"},
    )
    api.create_product(title="Distributed Systems", authors=["Maarten van Steen"])
    indexed(api, garden["id"], q="rose")

    found = search(api, q="rose")
    # A title match outranks a description match.
    assert [hit["id"] for hit in found["items"]] == [rose["id"], garden["id"]]
    assert found["total"] == 2
    assert found["backend"] == "postgres"
    assert found["degraded"] is False
    first = found["items"][0]
    assert first["title"] == "The Name of the Rose"
    assert first["category_name"] == "Crime"
    assert first["price"] == {"amount": 1299, "currency": "EUR"}
    facets = found["facets"]
    assert facets["category"] == [{"value": crime["id"], "label": "Crime", "count": 1}]
    prices = {bucket["value"]: bucket["count"] for bucket in facets["price"]}
    assert prices == {"0-1000": 0, "1000-2000": 1, "2000-3000": 1, "3000-5000": 0, "5000-": 0}
    assert {bucket["label"]: bucket["count"] for bucket in facets["author"]} == {
        "Umberto Eco": 1,
        "Monty Don": 1,
    }
    assert facets["in_stock"] == [{"value": True, "count": 0}, {"value": False, "count": 2}]

    # A parent category includes its children; filters combine.
    assert [hit["id"] for hit in search(api, q="rose", category=fiction["id"])["items"]] == [
        rose["id"]
    ]
    assert search(api, q="rose", price_min=2000)["total"] == 1
    assert search(api, q="rose", author="  UMBERTO   eco")["total"] == 1
    # An ISBN, with hyphens, finds its book.
    isbn = rose["isbn13"]
    dashed = f"{isbn[:3]}-{isbn[3:4]}-{isbn[4:8]}-{isbn[8:12]}-{isbn[12]}"
    assert [hit["id"] for hit in search(api, q=dashed)["items"]] == [rose["id"]]
    # Sorting.
    by_price = search(api, q="rose", sort="-price")["items"]
    assert [hit["id"] for hit in by_price] == [garden["id"], rose["id"]]


def test_pages_follow_cursors_and_a_foreign_cursor_is_400(api):
    made = [api.create_product(title=f"Cursor Book {n}") for n in range(5)]
    indexed(api, made[-1]["id"], q="cursor")
    seen, params = [], {"q": "cursor", "sort": "price", "limit": 2}
    pages = 0
    while True:
        page = search(api, **params)
        pages += 1
        assert (page["facets"] is not None) == (pages == 1)
        seen += [hit["id"] for hit in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert pages == 3
    assert sorted(seen) == sorted(product["id"] for product in made)
    cursor = search(api, q="cursor", limit=2)["next_cursor"]
    body = assert_problem(api.get("/search", params={"q": "book", "cursor": cursor}), 400)
    assert body["parameter"] == "cursor"
    assert_problem(api.get("/search", params={"q": "cursor", "cursor": "bm9wZQ"}), 400)


def test_a_broad_text_ranks_a_sample_and_estimates_its_counts(api):
    """More matches than the exact limit: counted and ranked over a sample, yet the book
    titled exactly so and the books by the author named so are ranked. Run against the
    backend with a limit of 3 (the service's is 10,000, too many to create here)."""
    plenty = [
        api.create_product(title=f"Almanac {n}", description="A comet crosses the sky.")
        for n in range(8)
    ]
    titled = api.create_product(title="Comet", description="The comet.")
    authored = api.create_product(title="Notes", authors=["Comet"], description="On a comet.")
    for book in (*plenty, titled, authored):
        indexed(api, book["id"], q="comet")
    assert search(api, q="comet")["exhaustive"] is True

    def answer(words, **params):
        with Session(api.platform.engine("search")) as session:
            return postgres.search(session, parse_search(q=words, **params), exact_limit=3)

    with api.platform.engine("search").connect() as connection:
        sample = connection.scalars(
            text("SELECT product_id::text FROM search_documents ORDER BY ctid LIMIT 4")
        ).all()
    assert titled["id"] not in sample and authored["id"] not in sample  # created last

    broad = answer("comet", limit=2)
    assert broad["exhaustive"] is False
    # Both outside the sample, yet ranked: the title match, then the author match.
    assert [hit["id"] for hit in broad["items"]] == [titled["id"], authored["id"]]
    assert broad["total"] >= 4
    assert sum(bucket["count"] for bucket in broad["facets"]["in_stock"]) == broad["total"]
    following = answer("comet", limit=2, cursor=broad["next_cursor"])
    assert following["exhaustive"] is False and following["total"] is None
    assert {titled["id"], authored["id"]}.isdisjoint(hit["id"] for hit in following["items"])
    # Sorting by price walks the whole (exact) order: every match, cheapest first.
    cheapest = answer("comet", sort="price", limit=20)
    assert len(cheapest["items"]) == 10
    assert cheapest["exhaustive"] is False  # the counts still are estimates


def test_updates_stock_and_withdrawals_reach_the_index(api):
    book = api.create_product(title="Quiet Harbour")
    indexed(api, book["id"], q="harbour")
    response = api.patch(
        f"/products/{book['id']}",
        json={"title": "Stormy Harbour"},
        token=api.admin,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    indexed(api, book["id"], q="stormy")
    assert search(api, q="quiet")["total"] == 0

    api.request("PUT", f"/products/{book['id']}/stock", json={"on_hand": 3}, token=api.admin)
    indexed(api, book["id"], q="harbour", in_stock="true")

    assert api.delete(f"/products/{book['id']}", token=api.admin).status_code == 204
    eventually(lambda: _assert_total(api, 0, q="harbour"))


def _assert_total(api, total, **params):
    assert search(api, **params)["total"] == total


def test_typos_are_corrected_and_the_search_box_suggests(api):
    book = api.create_product(title="The Name of the Rose", authors=["Umberto Eco"])
    indexed(api, book["id"], q="umberto")
    corrected = search(api, q="Umbreto")
    assert corrected["did_you_mean"] == "umberto"
    assert [hit["id"] for hit in corrected["items"]] == [book["id"]]

    response = api.get("/search/suggest", params={"q": "umb"})
    assert response.status_code == 200, response.text
    suggestions = response.json()
    assert "umberto" in suggestions["completions"]
    for typed in ("the nam", "name of the rsoe"):  # half typed; a typo
        answer = api.get("/search/suggest", params={"q": typed}).json()
        assert [product["id"] for product in answer["products"]] == [book["id"]], typed


# Texts a search box receives; none may fail the request.
AWKWARD_TEXTS = [
    "",
    "   ",
    "the of and",  # stop words only
    '"unbalanced quote',
    "title:(rose OR name) AND -eco !!! & | <-> :* ( ) [ ] { } ~ ^ \\",
    "' OR 1=1 --",
    "a & !(b | c) <2> d:*",
    "Привет мир 日本語の本 🙂 ÉCOLE naïve",
    "x" * 1999,
    "word " * 400,
    "978-0",
    "-",
    "*",
    "\u200b\u00a0\t",
]


@pytest.mark.parametrize("text", AWKWARD_TEXTS, ids=range(len(AWKWARD_TEXTS)))
def test_any_text_is_answered_without_error(api, text):
    response = api.get("/search", params={"q": text})
    assert response.status_code == 200, response.text
    response = api.get("/search/suggest", params={"q": text[:200]})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "params",
    [
        {"price_min": "cheap"},
        {"price_min": 500, "price_max": 100},
        {"rating_min": 9},
        {"rating_min": "NaN"},
        {"sort": "popularity"},
        {"category": "fiction"},
        {"in_stock": "maybe"},
        {"limit": 0},
        {"limit": 101},
        {"colour": "red"},
        {"q": "x" * 2001},
        {"cursor": "!!!"},
    ],
)
def test_nonsense_parameters_are_400(api, params):
    assert_problem(api.get("/search", params=params), 400)


def test_the_index_can_be_rebuilt_while_it_is_queried(api):
    books = [api.create_product(title=f"Rebuilt Volume {n}") for n in range(30)]
    indexed(api, books[-1]["id"], q="rebuilt")
    # Lose the index rows: only a rebuild from the catalog brings them back.
    with api.platform.engine("search").begin() as connection:
        from sqlalchemy import text

        connection.execute(
            text("DELETE FROM search_documents WHERE product_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [book["id"] for book in books[:10]]},
        )
    assert search(api, q="rebuilt")["total"] == 20

    failures, answers, stop = [], [], threading.Event()

    def keep_searching():
        while not stop.is_set():
            response = api.http.get(f"{api.platform.api}/search", params={"q": "rebuilt"})
            if response.status_code != 200:
                failures.append(response.text)
            else:
                answers.append(response.json()["total"])

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        rebuilt = bookstore_cli(api.platform, "search-rebuild", "--page-size", "7")
    finally:
        stop.set()
        searcher.join()
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "index rebuilt with 30 books" in rebuilt.stdout
    assert "books/s" in rebuilt.stderr or "100%" in rebuilt.stderr  # the progress bar
    assert failures == []
    assert answers and set(answers) <= {20, 30}
    assert search(api, q="rebuilt")["total"] == 30
    with api.platform.rpc() as rpc:
        status = rpc.search.index_status()
    assert status["documents"] == 30
    assert status["last_build"]["status"] == "finished"
    assert status["last_build"]["documents"] == 30


def test_elasticsearch_configured_but_unreachable_falls_back_to_postgres(api):
    """The search service restarted with an Elasticsearch address nothing listens on:
    searches still answer (from PostgreSQL, saying so) and /ready reports degraded."""
    from ops.processes import service_process
    from tests.harness import free_port

    platform = api.platform
    book = api.create_product(title="Fallback Harbour")
    indexed(api, book["id"], q="fallback")
    original = platform.processes["search"]
    original.stop()
    degraded = service_process(
        "search",
        platform.log_dir,
        {
            **platform.env,
            "SEARCH_BACKEND": "elasticsearch",
            "SEARCH_ELASTICSEARCH_URL": f"http://127.0.0.1:{free_port()}",
            "SEARCH_BREAKER_FAILURES": "2",
        },
        name="search-degraded",
    )
    degraded.start()
    try:

        def answers_from_postgres():
            found = search(api, q="fallback")
            assert [hit["id"] for hit in found["items"]] == [book["id"]]
            assert found["backend"] == "postgres" and found["degraded"] is True
            return found

        eventually(answers_from_postgres, timeout=60)
        suggested = api.get("/search/suggest", params={"q": "fallb"}).json()
        assert suggested["degraded"] is True and suggested["products"]

        ready = api.get(f"{platform.base_url}/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["search"].startswith("degraded: elasticsearch unavailable")
        with platform.rpc() as rpc:
            status = rpc.search.index_status()
        assert status["breaker"]["state"] in ("open", "half_open")
    finally:
        degraded.stop()
        original.start()
        eventually(lambda: _assert_ready(api), timeout=60)


def _assert_ready(api):
    ready = api.get(f"{api.platform.base_url}/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
