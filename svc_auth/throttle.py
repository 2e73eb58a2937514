"""Failed-login throttling, per account and per client address.

Two counters watch every login: one for the email address (whether or not it has an
account, so lockouts reveal nothing) and one for the client's IP address. Failures
within a window count; past ``slow_after`` each further attempt must wait longer
(1 s, 2 s, 4 s... up to ``max_delay``), and at ``lock_after`` the key is locked for
``lock_for``. A successful login clears the account counter, never the address counter
(one valid account must not reset an attacker's count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common.errors import TooManyAttempts
from svc_auth.models import LoginThrottle
from svc_auth.settings import Settings


@dataclass(frozen=True)
class Policy:
    window: timedelta
    lock_after: int
    lock_for: timedelta
    slow_after: int | None = None
    max_delay_seconds: int = 30


def account_policy() -> Policy:
    settings = Settings.current()
    return Policy(
        window=timedelta(seconds=settings.login_window_seconds),
        slow_after=settings.login_slow_after,
        lock_after=settings.account_lock_after,
        lock_for=timedelta(seconds=settings.lock_seconds),
    )


def address_policy() -> Policy:
    settings = Settings.current()
    return Policy(
        window=timedelta(seconds=settings.login_window_seconds),
        lock_after=settings.address_lock_after,
        lock_for=timedelta(seconds=settings.lock_seconds),
    )


def account_key(email: str) -> str:
    return f"account:{email}"


def address_key(client_ip: str | None) -> str | None:
    return f"ip:{client_ip}" if client_ip else None


def wait_seconds(row: LoginThrottle | None, policy: Policy, now: datetime) -> int:
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


def count_failure(row: LoginThrottle, policy: Policy, now: datetime) -> None:
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


def serialize(session: Session, key: str) -> None:
    """Makes concurrent logins for one key take turns (until the transaction ends), so a
    burst of parallel guesses cannot all pass the check before any failure is counted."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def check(session: Session, keys: list[tuple[str, Policy]], now: datetime) -> None:
    """Raises :class:`TooManyAttempts` if any key must still wait."""
    wait = max(
        (wait_seconds(session.get(LoginThrottle, key), policy, now) for key, policy in keys),
        default=0,
    )
    if wait > 0:
        raise TooManyAttempts(
            f"Too many failed attempts. Try again in {wait} seconds.", {"retry_after": wait}
        )


def record_failure(session: Session, keys: list[tuple[str, Policy]], now: datetime) -> None:
    for key, policy in keys:
        session.execute(
            insert(LoginThrottle)
            .values(key=key, failures=0, first_failure_at=now, last_failure_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = session.get(LoginThrottle, key, with_for_update=True, populate_existing=True)
        count_failure(row, policy, now)
    session.flush()


def clear(session: Session, key: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


def purge_stale(session: Session, now: datetime) -> int:
    """Forgets counters whose window and lock are both over (a timer calls this)."""
    window = max(account_policy().window, address_policy().window)
    result = session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < now - window,
            (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < now),
        )
    )
    return result.rowcount
