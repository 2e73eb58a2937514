"""ETags and conditional requests (RFC 9110 §13) for versioned resources.

A resource's ETag is its ``version`` in quotes: versions change with every write and
the JSON of one version is always the same, so the tag is strong.
"""

from __future__ import annotations

from common.errors import PreconditionFailed


def etag(version: int) -> str:
    return f'"{version}"'


def _tags(header_value: str) -> list[str]:
    return [tag.strip() for tag in header_value.split(",") if tag.strip()]


def none_match(if_none_match: str | None, current: str) -> bool:
    """True if ``If-None-Match`` says the client's copy is current (answer 304).
    The comparison is weak, as the RFC asks for ``If-None-Match``."""
    if not if_none_match:
        return False
    tags = _tags(if_none_match)
    return "*" in tags or any(tag.removeprefix("W/") == current for tag in tags)


def expected_version(if_match: str | None) -> int | None:
    """The version ``If-Match`` insists on: None when absent or ``*`` (any version).

    A tag we could never have issued (weak, or not a version) can never match, so it is
    refused outright, as the RFC's strong comparison would.
    """
    if not if_match or if_match.strip() == "*":
        return None
    tags = _tags(if_match)
    if len(tags) == 1 and tags[0].startswith('"') and tags[0].endswith('"'):
        inner = tags[0][1:-1]
        if inner.isdigit():
            return int(inner)
    raise PreconditionFailed(
        'If-Match must be one ETag from an earlier response, such as "3".',
        {"if_match": if_match},
    )
