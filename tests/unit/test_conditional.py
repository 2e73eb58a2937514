import pytest

from common.errors import PreconditionFailed
from gateway.conditional import etag, expected_version, none_match


def test_etag_is_the_quoted_version():
    assert etag(3) == '"3"'


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"3"', True),
        ('W/"3"', True),  # If-None-Match compares weakly
        ('"2", "3"', True),
        ("*", True),
        ('"2"', False),
        ("3", False),
        (None, False),
        ("", False),
    ],
)
def test_if_none_match(header, matches):
    assert none_match(header, '"3"') is matches


@pytest.mark.parametrize(("header", "version"), [(None, None), ("*", None), ('"7"', 7)])
def test_if_match_gives_the_expected_version(header, version):
    assert expected_version(header) == version


@pytest.mark.parametrize("header", ['W/"7"', "7", '"seven"', '"7", "8"'])
def test_if_match_we_never_issued_fails_the_precondition(header):
    with pytest.raises(PreconditionFailed):
        expected_version(header)
