"""Email addresses as account identifiers."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from common.errors import InvalidInput


def normalize_email(raw: str) -> str:
    """The canonical form of an address: syntax checked, lower-cased."""
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise InvalidInput(f"email: {error}", {"field": "email"}) from None


def lookup_form(raw: str) -> str:
    """What to look an account up by: the canonical form, or (for input that is not an
    address at all) a bounded lower-cased copy that matches no account."""
    try:
        return normalize_email(raw)
    except InvalidInput:
        return raw.strip().lower()[:254]
