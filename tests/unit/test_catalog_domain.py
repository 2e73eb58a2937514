from datetime import UTC, datetime

import pytest

from common import books
from common.errors import InvalidInput, InvalidParameter
from svc_catalog import domain


@pytest.mark.parametrize(
    "raw", ["9780262033848", "978-0-262-03384-8", "978 0 262 03384 8", "9791032305690"]
)
def test_valid_isbn13_is_normalised_to_digits(raw):
    assert books.normalize_isbn13(raw) == raw.replace("-", "").replace(" ", "")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("9780262033847", "check digit"),  # last digit off by one
        ("9770262033848", "978 or 979"),  # not a Bookland prefix
        ("978026203384", "13 digits"),  # twelve digits
        ("97802620338481", "13 digits"),
        ("97802620338X8", "13 digits"),
        ("", "13 digits"),
    ],
)
def test_invalid_isbn13_is_refused_with_the_reason(raw, reason):
    with pytest.raises(InvalidInput) as refused:
        books.normalize_isbn13(raw)
    assert reason in refused.value.detail
    assert refused.value.extensions == {"field": "isbn13"}


def test_check_digit_matches_published_isbns():
    # Introduction to Algorithms, 3rd ed. and The Pragmatic Programmer, 20th anniv. ed.
    assert books.isbn13_check_digit("978026203384") == "8"
    assert books.isbn13_check_digit("978013595705") == "9"


def test_clean_text_collapses_whitespace_and_refuses_blank():
    assert domain.clean_text("  The   Name\tof the Rose ", "title") == "The Name of the Rose"
    with pytest.raises(InvalidInput) as refused:
        domain.clean_text(" \n\t ", "title")
    assert refused.value.extensions == {"field": "title"}


def test_authors_listed_twice_in_different_case_are_refused():
    with pytest.raises(InvalidInput, match="twice"):
        domain.clean_authors(["Umberto Eco", "umberto  ECO"])


def test_author_key_ignores_case_and_spacing():
    assert books.author_key("  Ursula K.  Le Guin ") == books.author_key("ursula k. le guin")


def test_publication_year_may_be_next_year_but_not_later():
    today = datetime(2026, 6, 1, tzinfo=UTC)
    assert domain.check_publication_year(2027, today) == 2027
    assert domain.check_publication_year(None, today) is None
    with pytest.raises(InvalidInput, match="more than a year away"):
        domain.check_publication_year(2028, today)


def test_merge_patch_follows_rfc_7396():
    target = {"title": "A", "attributes": {"pages": 100, "language": "en"}, "description": "x"}
    patch = {"attributes": {"pages": 120, "language": None, "format": "ebook"}, "description": None}
    assert domain.merge_patch(target, patch) == {
        "title": "A",
        "attributes": {"pages": 120, "format": "ebook"},
    }
    assert target["attributes"] == {"pages": 100, "language": "en"}, "target is not mutated"


def test_author_keys_fit_the_stored_column():
    assert len(books.author_key("A" * 500)) == books.AUTHOR_KEY_MAX_CHARS


def test_catalog_and_search_check_filters_the_same_way():
    catalog = frozenset({"category_id", "author", "price_min", "price_max"})
    for offered in (catalog, books.BOOK_FILTERS):
        assert books.check_book_filters(
            {"author": "  Le  Guin", "price_min": 100, "price_max": None}, offered
        ) == {"author": "le guin", "price_min": 100}
        with pytest.raises(InvalidParameter, match="price_min is above price_max"):
            books.check_book_filters({"price_min": 10, "price_max": 5}, offered)
        with pytest.raises(InvalidParameter, match="author: must be a name"):
            books.check_book_filters({"author": "x\x00"}, offered)
        with pytest.raises(InvalidParameter, match="category: not a UUID"):
            books.check_book_filters({"category_id": "nope"}, offered)


def test_a_filter_the_caller_does_not_offer_is_refused_by_name():
    catalog = frozenset({"category_id", "author", "price_min", "price_max"})
    with pytest.raises(InvalidParameter, match="Unknown filter\\(s\\): rating_min") as refused:
        books.check_book_filters({"rating_min": 4}, catalog)
    assert refused.value.extensions == {"filters": ["rating_min"]}
