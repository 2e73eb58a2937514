"""The catalog's rules, in plain Python: what a valid book looks like."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from common.errors import InvalidInput

_SEPARATORS = re.compile(r"[\s-]")
_SPACES = re.compile(r"\s+")


def normalize_isbn13(raw: str) -> str:
    """The 13 digits of an ISBN-13 given with or without hyphens/spaces; checks the
    prefix (978/979) and the check digit."""
    digits = _SEPARATORS.sub("", raw)
    if len(digits) != 13 or not digits.isdigit() or not digits.startswith(("978", "979")):
        raise InvalidInput(
            f"isbn13: {raw!r} is not an ISBN-13 (13 digits starting 978 or 979).",
            {"field": "isbn13"},
        )
    if isbn13_check_digit(digits[:12]) != digits[12]:
        raise InvalidInput(f"isbn13: {raw!r} has a wrong check digit.", {"field": "isbn13"})
    return digits


def isbn13_check_digit(first_twelve: str) -> str:
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(first_twelve))
    return str((10 - total % 10) % 10)


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


def author_key(name: str) -> str:
    """How the author filter compares names: case and spacing ignored."""
    return _SPACES.sub(" ", name).strip().casefold()


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
