import uuid

import pytest
from sqlalchemy import column, select, table

from common.errors import InvalidParameter
from common.pagination import (
    MAX_LIMIT,
    Filter,
    cursor_id,
    decode_cursor,
    encode_cursor,
    filtered,
    page,
    validate_limit,
)

QUERY = {"filters": {"author": "umberto eco"}, "sort": "title"}


def test_cursor_round_trips_and_is_url_safe():
    cursor = encode_cursor(["The Name of the Rose", "a1b2"], QUERY)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor, QUERY, arity=2) == ["The Name of the Rose", "a1b2"]


def test_cursor_from_another_query_is_refused():
    cursor = encode_cursor(["x", "y"], QUERY)
    with pytest.raises(InvalidParameter, match="different query"):
        decode_cursor(cursor, {**QUERY, "sort": "-title"}, arity=2)


@pytest.mark.parametrize("cursor", ["", "not base64 at all!", "e30", "eyJwIjoxLCJxIjoyfQ"])
def test_garbage_cursors_are_refused(cursor):
    with pytest.raises(InvalidParameter):
        decode_cursor(cursor, QUERY, arity=2)


def test_cursor_with_the_wrong_shape_is_refused():
    with pytest.raises(InvalidParameter):
        decode_cursor(encode_cursor(["only one"], QUERY), QUERY, arity=2)


def test_cursor_id_must_be_a_uuid():
    identifier = uuid.uuid4()
    assert cursor_id(str(identifier)) == identifier
    with pytest.raises(InvalidParameter):
        cursor_id("'; DROP TABLE products; --")


def test_limit_bounds():
    assert validate_limit(None) == 20
    assert validate_limit(MAX_LIMIT) == MAX_LIMIT
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(InvalidParameter):
            validate_limit(bad)


def test_page_shape():
    assert page([1, 2], None) == {"items": [1, 2], "next_cursor": None}


_accounts = table("accounts", column("email"), column("status"))
_ACCOUNT_FILTERS = {
    "email": Filter(lambda email: _accounts.c.email == email, normalize=str.casefold),
    "status": Filter(lambda status: _accounts.c.status == status, allowed=("active", "closed")),
}


def test_filters_given_a_value_narrow_the_query_and_bind_the_cursor():
    query, applied = filtered(
        select(_accounts), {"email": "Ann@Example.org", "status": None}, _ACCOUNT_FILTERS
    )
    assert applied == {"email": "ann@example.org"}  # normalised; status not given
    compiled = query.compile(compile_kwargs={"literal_binds": True})
    assert "accounts.email = 'ann@example.org'" in str(compiled)
    assert "status" not in str(compiled).split("WHERE")[1]


def test_a_value_outside_the_allowed_ones_is_refused_by_name():
    with pytest.raises(InvalidParameter, match="status: 'gone' is not one of active, closed") as e:
        filtered(select(_accounts), {"status": "gone"}, _ACCOUNT_FILTERS)
    assert e.value.extensions == {"parameter": "status"}
