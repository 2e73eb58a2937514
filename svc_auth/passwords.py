"""Passwords: the policy they must meet, and hashing with Argon2id (argon2-cffi's
defaults, RFC 9106's second choice)."""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import patcher, tpool

from common.errors import InvalidInput

T = TypeVar("T")

#: NIST SP 800-63B: length matters, composition rules do not; refuse known-breached ones.
MIN_LENGTH = 10
MAX_LENGTH = 256
# 20,000 passwords most common in breaches, as shipped by Django (BSD licence, see
# data/LICENSE.django).
_COMMON_PASSWORDS_PATH = Path(__file__).parent / "data" / "common-passwords.txt.gz"

_hasher = PasswordHasher()

# Verified when the email is unknown, so a wrong email costs as much time as a wrong
# password and response times do not reveal which addresses have accounts.
_UNKNOWN_USER_HASH = _hasher.hash("no account has this password")


def _off_the_hub(function: Callable[..., T], *args: object) -> T:
    """Runs ``function`` in a real OS thread when inside a monkey-patched service.

    Argon2 is deliberately slow (tens of ms); under eventlet a real thread keeps the hub,
    and with it every other request of the service, running meanwhile. Elsewhere (the
    CLI, tests) plain threads are already real, and tpool must not be used from them.
    """
    if patcher.is_monkey_patched("thread"):
        return tpool.execute(function, *args)
    return function(*args)


def hash_password(password: str) -> str:
    return _off_the_hub(_hasher.hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; with no hash (no such user) does the same work."""
    try:
        matches = _off_the_hub(_hasher.verify, password_hash or _UNKNOWN_USER_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return matches and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's defaults."""
    return _hasher.check_needs_rehash(password_hash)


@functools.cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(_COMMON_PASSWORDS_PATH, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def check_policy(password: str, email: str) -> None:
    """Raises :class:`InvalidInput` (field ``password``) for a password we refuse."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidInput(
            f"password: must be {MIN_LENGTH} to {MAX_LENGTH} characters long.",
            {"field": "password"},
        )
    folded = password.strip().lower()
    local_part = email.split("@")[0].lower()
    if folded in {email.lower(), local_part} or len(set(folded)) < 3:
        raise InvalidInput(
            "password: too easy to guess (your email address, or one repeated character).",
            {"field": "password"},
        )
    if folded in _common_passwords() or folded.replace(" ", "") in _common_passwords():
        raise InvalidInput(
            "password: it appears in lists of breached passwords; choose another.",
            {"field": "password"},
        )
