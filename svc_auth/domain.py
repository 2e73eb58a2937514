"""Auth's rules, in plain Python (no broker, no database): what a password must be, how
failed logins slow down and lock a key, and how long tokens and signing keys live.

Failed-login throttling: two counters watch every login: one for the email address
(whether or not it has an account, so lockouts reveal nothing) and one for the client's
IP address. Failures within a window count; past ``slow_after`` each further attempt
must wait longer (1 s, 2 s, 4 s... up to ``max_delay``), and at ``lock_after`` the key is
locked for ``lock_for``. A successful login clears the account counter, never the address
counter (one valid account must not reset an attacker's count). svc_auth/throttle.py
keeps the counters in the database.
"""

from __future__ import annotations

import functools
import gzip
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from common.errors import InvalidInput

if TYPE_CHECKING:
    from svc_auth.settings import Settings

# -- passwords -------------------------------------------------------------------------

#: NIST SP 800-63B: length matters, composition rules do not; refuse known-breached ones.
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
# 20,000 passwords most common in breaches, as shipped by Django (BSD licence, see
# data/LICENSE.django).
_COMMON_PASSWORDS_PATH = Path(__file__).parent / "data" / "common-passwords.txt.gz"


@functools.cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(_COMMON_PASSWORDS_PATH, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def check_password_policy(password: str, email: str) -> None:
    """Raises :class:`InvalidInput` (field ``password``) for a password we refuse."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password: must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long.",
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


# -- failed logins ---------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    window: timedelta
    lock_after: int
    lock_for: timedelta
    slow_after: int | None = None
    max_delay_seconds: int = 30


class FailureCount(Protocol):
    """One key's failed logins (a ``login_throttle`` row)."""

    failures: int
    first_failure_at: datetime
    last_failure_at: datetime
    locked_until: datetime | None


def account_policy(settings: Settings) -> Policy:
    """The email address's counter: slowed down, then locked."""
    return Policy(
        window=timedelta(seconds=settings.login_window_seconds),
        slow_after=settings.login_slow_after,
        lock_after=settings.account_lock_after,
        lock_for=timedelta(seconds=settings.lock_seconds),
    )


def address_policy(settings: Settings) -> Policy:
    """The client address's counter: locked much later (many people share an address)."""
    return Policy(
        window=timedelta(seconds=settings.login_window_seconds),
        lock_after=settings.address_lock_after,
        lock_for=timedelta(seconds=settings.lock_seconds),
    )


def wait_seconds(row: FailureCount | None, policy: Policy, now: datetime) -> int:
    """How long the key must wait before its next attempt (0: go ahead)."""
    if row is None:
        return 0
    if row.locked_until is not None and row.locked_until > now:
        return math.ceil((row.locked_until - now).total_seconds())
    if now - row.first_failure_at > policy.window:
        return 0
    if policy.slow_after is not None and row.failures >= policy.slow_after:
        delay = min(2 ** (row.failures - policy.slow_after), policy.max_delay_seconds)
        ready_at = row.last_failure_at + timedelta(seconds=delay)
        if now < ready_at:
            return math.ceil((ready_at - now).total_seconds())
    return 0


def count_failure(row: FailureCount, policy: Policy, now: datetime) -> None:
    """Adds one failure to ``row`` (starting a new window if the last one is over)."""
    if now - row.first_failure_at > policy.window or (
        row.locked_until is not None and row.locked_until <= now
    ):
        row.failures = 0
        row.first_failure_at = now
        row.locked_until = None
    row.failures += 1
    row.last_failure_at = now
    if row.failures >= policy.lock_after:
        row.locked_until = now + policy.lock_for


# -- tokens and signing keys -----------------------------------------------------------


def may_rotate(
    current_key_created_at: datetime | None, now: datetime, access_token_ttl: timedelta
) -> bool:
    """A new signing key may replace the current one once the current one is older than
    an access token's lifetime: retiring the previous key sooner could cut short tokens it
    signed."""
    return current_key_created_at is None or now - current_key_created_at >= access_token_ttl


def rotation_due(key_age: timedelta | None, max_age: timedelta) -> bool:
    """The timer rotates a signing key older than ``AUTH_KEY_ROTATION_DAYS``."""
    return key_age is not None and key_age >= max_age
