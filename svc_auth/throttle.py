"""Failed-login throttling, per account and per client address: the counters, kept in
the database. The rules they follow (windows, slowing down, locks) are in
svc_auth/domain.py."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common.errors import TooManyAttempts
from svc_auth.domain import Policy, account_policy, address_policy, count_failure, wait_seconds
from svc_auth.models import LoginThrottle
from svc_auth.settings import Settings


def account_key(email: str) -> str:
    return f"account:{email}"


def address_key(client_ip: str | None) -> str | None:
    return f"ip:{client_ip}" if client_ip else None


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
    settings = Settings.current()
    window = max(account_policy(settings).window, address_policy(settings).window)
    result = session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < now - window,
            (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < now),
        )
    )
    return result.rowcount
