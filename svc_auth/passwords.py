"""Password hashing with Argon2id (argon2-cffi's defaults, RFC 9106's second choice)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool

_hasher = PasswordHasher()

# Verified when the email is unknown, so a wrong email costs as much time as a wrong
# password and response times do not reveal which addresses have accounts.
_UNKNOWN_USER_HASH = _hasher.hash("no account has this password")


def hash_password(password: str) -> str:
    # Argon2 is deliberately slow (tens of ms); a real thread keeps the eventlet hub,
    # and with it every other request of this service, running meanwhile.
    return tpool.execute(_hasher.hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; with no hash (no such user) does the same work."""
    try:
        return tpool.execute(_hasher.verify, password_hash or _UNKNOWN_USER_HASH, password) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's defaults."""
    return _hasher.check_needs_rehash(password_hash)
