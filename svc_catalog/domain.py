"""The catalog's rules, in plain Python: what a valid book looks like."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "check_publication_year",
    "clean_authors",
    "clean_text",
    "merge_patch",
    "normalize_isbn13",
]

from common.books import author_key, normalize_isbn13
from common.errors import InvalidInput

_SPACES = re.compile(r"\s+")


def clean_text(value: str, field: str) -> str:
    """Trims and collapses whitespace; refuses what is left empty."""
    cleaned = _SPACES.sub(" ", value).strip()
    if not cleaned:
        raise InvalidInput(f"{field}: must not be blank.", {"field": field})
    return cleaned


def clean_authors(authors: list[str]) -> list[str]:
    cleaned = [clean_text(author, "authors") for author in authors]
    if len({author_key(author) for author in cleaned}) != len(cleaned):
        raise InvalidInput("authors: an author is listed twice.", {"field": "authors"})
    return cleaned


def check_publication_year(year: int | None, today: datetime | None = None) -> int | None:
    """Books may be listed a year ahead of publication, not more."""
    if year is None:
        return None
    latest = (today or datetime.now(UTC)).year + 1
    if year > latest:
        raise InvalidInput(
            f"publication_year: {year} is more than a year away.", {"field": "publication_year"}
        )
    return year


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch: ``null`` removes, objects merge, anything else replaces."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged
