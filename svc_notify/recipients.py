"""What notify keeps about people, against auth's accounts (common/reconcile.py,
docs/decisions/0141).

notify holds personal data of a customer in their channel preferences and in the email
and SMS deliveries to them (an address, the content, or a message still waiting to be
sent). All of it must go when the account is deleted (``user.deleted``:
svc_notify/erasure.py). If that event was lost, the data stays: so the users notify
holds data of are listed by id range and asked of auth (``live_user_ids``); one auth
does not have, or has deleted, is ``extra`` and is forgotten exactly as its event would
have done. Nothing is ever ``missing``: notify needs no copy of an account it has not
written to.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from common import reconcile
from svc_notify import erasure

COPY = "notify_recipients"
#: The users notify holds personal data of (the version is constant: presence is all).
HELD = (
    "(SELECT user_id FROM preferences UNION SELECT user_id FROM deliveries "
    "WHERE user_id IS NOT NULL AND channel IN ('email', 'sms') AND (recipient IS NOT NULL "
    "OR content <> CAST('{}' AS jsonb) OR status IN ('pending', 'parked'))) AS held"
)
_PRESENT = "1"


class Accounts(Protocol):
    """auth's side (over RPC in the service)."""

    def live(self, user_ids: list[str]) -> list[str]: ...


def find_drift(session: Session, accounts: Accounts) -> reconcile.Drift:
    held = reconcile.digest(session, HELD, "user_id", _PRESENT, "true")
    buckets: dict[str, dict[str, Any]] = {}

    def held_in(bucket: str) -> dict[str, Any]:
        if bucket not in buckets:
            buckets[bucket] = reconcile.versions(session, HELD, "user_id", _PRESENT, "true", bucket)
        return buckets[bucket]

    def live_in(bucket: str) -> dict[str, Any]:
        return {user_id: 1 for user_id in accounts.live(list(held_in(bucket)))}

    # auth is asked only about the users held here: its digest of the same set is this one
    # less the users it no longer has, so every held bucket is compared.
    drift = reconcile.compare({}, held, live_in, held_in)
    drift.source_rows = drift.copy_rows - len(drift.extra)
    return drift


def reconcile_recipients(session: Session, accounts: Accounts, *, repair: bool) -> dict[str, Any]:
    """Finds the drift and, if ``repair``, forgets the users auth does not have
    (committing); returns the report."""
    return reconcile.settle(
        COPY,
        find_drift(session, accounts),
        (lambda drift: _repair(session, drift)) if repair else None,
    )


def _repair(session: Session, drift: reconcile.Drift) -> int:
    for user_id in drift.extra:
        erasure.forget_user(session, user_id)
        session.commit()
    return len(drift.extra)
