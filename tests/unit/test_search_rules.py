"""Search's rules that need no database: query checking, cursors, ISBNs, the
recommender's maths and its evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.books import isbn13_in
from common.errors import InvalidParameter
from common.pagination import encode_cursor
from svc_search.evaluate import evaluate, generate_interactions, leave_last_out
from svc_search.indexing import Category, category_path, document_values, words_of
from svc_search.query import MAX_QUERY_CHARS, clean_text, parse_search
from svc_search.recommend import fit, recommend_indexes, train_if_due

ID = "0b6c0f7e-5a43-4c1d-9a67-1f0a2b3c4d5e"


def test_text_is_normalised_and_bounded():
    assert clean_text("  Cafe\u0301 \x00 au\tlait ") == "Café au lait"
    assert len(clean_text("x" * 5000)) == MAX_QUERY_CHARS
    assert clean_text("a " * 100) == " ".join(["a"] * 16)
    assert clean_text(None) == ""


@pytest.mark.parametrize(
    ("text", "isbn"),
    [
        ("978-0-13-468599-1", "9780134685991"),
        ("9780134685991", "9780134685991"),
        ("0-13-468599-7", "9780134685991"),  # ISBN-10, converted
        ("0 13 468599 X", "9780134685991"),  # its check digit is recomputed
        ("12345", None),
        ("python 3", None),
    ],
)
def test_isbns_are_recognised(text, isbn):
    assert isbn13_in(text) == isbn


@pytest.mark.parametrize(
    "filters",
    [
        {"colour": "red"},
        {"price_min": -1},
        {"price_min": "10"},
        {"price_min": 10, "price_max": 5},
        {"rating_min": 0},
        {"rating_min": True},
        {"in_stock": "yes"},
        {"category_id": "fiction"},
        {"author": "  "},
    ],
)
def test_nonsense_filters_are_refused(filters):
    with pytest.raises(InvalidParameter):
        parse_search("rose", filters)


def test_sort_defaults_and_refusals():
    assert parse_search("rose").sort == "relevance"
    assert parse_search("").sort == "newest"
    with pytest.raises(InvalidParameter):
        parse_search("rose", sort="random")


def test_a_cursor_is_bound_to_its_query_and_checked_value_by_value():
    query = parse_search("rose", {"price_max": 2000}, "price")
    cursor = query.cursor_for([1299, ID])
    assert parse_search("rose", {"price_max": 2000}, "price", cursor).after == [1299, ID]
    for other in (
        parse_search("roses", {"price_max": 2000}, "price"),
        parse_search("rose", {"price_max": 2001}, "price"),
        parse_search("rose", {"price_max": 2000}, "-price"),
    ):
        with pytest.raises(InvalidParameter, match="different query"):
            parse_search(other.text, other.filters, other.sort, cursor)
    forged = encode_cursor(["1299", ID], query.identity())  # a string where a price goes
    with pytest.raises(InvalidParameter, match="not valid"):
        parse_search("rose", {"price_max": 2000}, "price", forged)
    assert parse_search("rose", {"price_max": 2000}, "price", cursor).with_facets is False


def test_documents_carry_the_category_path_and_lexicon_words():
    categories = {
        "c": Category("c", "Crime", "f"),
        "f": Category("f", "Fiction", None),
        "loop": Category("loop", "Loop", "loop"),
    }
    assert category_path(categories, "c") == ["c", "f"]
    assert category_path(categories, "loop") == ["loop"]
    assert category_path(categories, "unknown") == ["unknown"]
    product = {
        "id": ID,
        "isbn13": "9780134685991",
        "title": "The Name of the Rose",
        "authors": ["Umberto  Eco"],
        "description": None,
        "category_id": "c",
        "price": {"amount": 1299, "currency": "EUR"},
        "publication_year": 1980,
        "created_at": "2026-01-01T00:00:00Z",
        "version": 3,
    }
    values = document_values(product, categories, available=2, rating={"average": 4.5, "count": 2})
    assert values["category_path"] == ["c", "f"] and values["category_name"] == "Crime"
    assert values["author_keys"] == ["umberto eco"]
    assert values["product_version"] == 3 and values["rating_count"] == 2
    assert words_of(values) == ["eco", "name", "of", "rose", "the", "umberto"]


def frame(rows):
    return pd.DataFrame(
        [
            (user, item, pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=n))
            for n, (user, item) in enumerate(rows)
        ],
        columns=["user_id", "product_id", "occurred_at"],
    )


def test_item_similarity_recommends_what_similar_customers_bought_never_what_was_bought():
    model = fit(
        frame([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u3", "d")])
    )
    index = {item: i for i, item in enumerate(model.items)}
    neighbours = [model.items[i] for i, _ in model.neighbors_of(index["a"])]
    assert neighbours[0] == "b" and "d" not in neighbours
    recommended = [model.items[i] for i in recommend_indexes(model, np.array([index["a"]]), 3)]
    assert recommended[:2] == ["b", "c"]
    assert "a" not in recommended
    assert recommended[2] == "d"  # popularity fills up
    # Buying the same book twice counts once.
    assert fit(frame([("u1", "a"), ("u1", "a"), ("u2", "a")])).popularity.tolist() == [2.0]


def test_leave_last_out_holds_out_each_customers_latest_purchase():
    train, held_out = leave_last_out(frame([("u1", "a"), ("u1", "b"), ("u2", "c")]))
    assert held_out[["user_id", "product_id"]].values.tolist() == [["u1", "b"]]
    assert sorted(train["product_id"]) == ["a", "c"]


def test_the_model_beats_popularity_on_clustered_long_tail_data():
    scores = evaluate(generate_interactions(users=800, items=400, clusters=8, seed=3))
    assert scores is not None and scores.evaluated > 700
    assert scores.model_hit_rate > 1.3 * scores.popular_hit_rate
    assert scores.model_ndcg > scores.popular_ndcg
    assert evaluate(frame([("u1", "a"), ("u2", "b")])) is None  # nobody bought twice


def test_an_interval_of_zero_turns_scheduled_training_off():
    class NoDatabase:
        def __getattr__(self, name):
            raise AssertionError("scheduled training must not touch the database")

    assert train_if_due(NoDatabase(), interval_seconds=0) is None


def _facet_row(total: int, in_stock: int) -> dict:
    from svc_search.query import PRICE_BUCKETS, RATING_STEPS

    counts = {"total": total, "in_stock": in_stock}
    counts |= {f"price_{index}": total // len(PRICE_BUCKETS) for index in range(5)}
    counts |= {f"rating_{step}": 0 for step in RATING_STEPS}
    return {
        "facet_counts": counts,
        "facet_categories": [{"category_id": ID, "name": "Poetry", "count": total // 2}],
        "facet_authors": [{"key": "eco", "name": "Eco", "count": 3}],
    }


def test_facets_under_the_exact_limit_are_counts_and_ask_for_no_estimate():
    from svc_search.backends.postgres import _facets

    def no_estimate():
        raise AssertionError("an exact answer needs no estimate")

    facets = _facets(_facet_row(total=10, in_stock=4), exact_limit=10, estimate=no_estimate)
    assert facets["total"] == 10 and facets["exhaustive"] is True
    assert facets["in_stock"] == [{"value": True, "count": 4}, {"value": False, "count": 6}]
    assert facets["author"][0]["count"] == 3


def test_facets_over_a_sample_are_scaled_to_the_estimated_total():
    from svc_search.backends.postgres import _facets

    sampled = _facets(_facet_row(total=11, in_stock=4), exact_limit=10, estimate=lambda: 1100)
    assert sampled["total"] == 1100 and sampled["exhaustive"] is False
    assert [bucket["count"] for bucket in sampled["in_stock"]] == [400, 700]
    assert sampled["category"][0]["count"] == 500
    # The planner may guess fewer than the sample holds: the sample is the floor.
    floor = _facets(_facet_row(total=11, in_stock=4), exact_limit=10, estimate=lambda: 3)
    assert floor["total"] == 11 and floor["in_stock"][0]["count"] == 4
