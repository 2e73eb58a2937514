"""Passwords: hashing with Argon2id (argon2-cffi's defaults, RFC 9106's second choice).
The policy they must meet is a rule: svc_auth/domain.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import patcher, tpool

T = TypeVar("T")

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
