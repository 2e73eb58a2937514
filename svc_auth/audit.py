"""The security audit trail: logins, refusals, role changes, suspensions...

Each entry says who acted, on whose account, when, from which address and under which
correlation id (the last two come from the call context the gateway sends). Entries are
written in the same transaction as what they record; refusals are committed before the
error is raised (see ``sessions``), so an attack leaves a trace.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import context
from common.db import isoformat, parse_id, utcnow
from common.pagination import Filter, filtered, newest_first
from svc_auth.models import AuditEvent

ACTIONS = (
    "user.registered",
    "email.verified",
    "login.succeeded",
    "login.failed",
    "login.throttled",
    "login.refused_suspended",
    "mfa.failed",
    "mfa.enabled",
    "mfa.disabled",
    "mfa.recovery_codes_regenerated",
    "refresh.reused",
    "logout",
    "token.refused",
    "password.changed",
    "password.reset_requested",
    "password.reset",
    "profile.updated",
    "role.changed",
    "user.suspended",
    "user.reinstated",
    "user.deleted",
    "signing_key.rotated",
)


def record(
    session: Session,
    action: str,
    *,
    subject_id: uuid.UUID | str | None = None,
    actor_id: uuid.UUID | str | None = None,
    details: dict[str, Any] | None = None,
    client_ip: str | None = None,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> None:
    """Adds one entry. ``actor_id`` defaults to the authenticated caller, the address and
    correlation id to the current call's."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    current = context.current()
    session.add(
        AuditEvent(
            id=uuid.uuid4(),
            occurred_at=occurred_at or utcnow(),
            action=action,
            actor_id=_uuid(actor_id if actor_id is not None else current.user_id),
            subject_id=_uuid(subject_id),
            client_ip=(client_ip or current.client_ip or None),
            correlation_id=correlation_id or current.correlation_id,
            details=details or {},
        )
    )


def _uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "occurred_at": isoformat(event.occurred_at),
        "action": event.action,
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "subject_id": str(event.subject_id) if event.subject_id else None,
        "client_ip": event.client_ip,
        "correlation_id": event.correlation_id,
        "details": event.details,
    }


EVENT_FILTERS = {
    "subject_id": Filter(lambda user_id: AuditEvent.subject_id == parse_id(user_id, "user_id")),
    "action": Filter(lambda action: AuditEvent.action == action, allowed=ACTIONS),
}


def list_events(
    session: Session,
    *,
    subject_id: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Newest first, filtered by account and/or action, paged by keyset cursor."""
    query, filters = filtered(
        select(AuditEvent), {"subject_id": subject_id, "action": action}, EVENT_FILTERS
    )
    return newest_first(
        session,
        query,
        AuditEvent.occurred_at,
        AuditEvent.id,
        filters=filters,
        cursor=cursor,
        limit=limit,
        to_dict=event_to_dict,
    )


#: Why the gateway refused a token (see gateway/audit.py).
TOKEN_REFUSAL_REASONS = ("invalid", "expired", "unknown_key", "insufficient_scope")
MAX_REFUSALS_PER_BATCH = 500


def record_token_refusals(session: Session, refusals: list[dict[str, Any]]) -> int:
    """Records a batch of the gateway's token refusals; malformed entries are skipped (the
    gateway is trusted, but an audit trail must not fail on one odd entry)."""
    recorded = 0
    for refusal in refusals[:MAX_REFUSALS_PER_BATCH]:
        if not isinstance(refusal, dict) or refusal.get("reason") not in TOKEN_REFUSAL_REASONS:
            continue
        try:
            occurred_at = datetime.fromisoformat(str(refusal.get("occurred_at")))
        except ValueError:
            continue
        record(
            session,
            "token.refused",
            subject_id=refusal.get("claimed_subject"),
            client_ip=_bounded(refusal.get("client_ip"), 45),
            correlation_id=_bounded(refusal.get("correlation_id"), 128),
            occurred_at=occurred_at,
            details={
                "reason": refusal["reason"],
                "path": _bounded(refusal.get("path"), 200),
            },
        )
        recorded += 1
    return recorded


def _bounded(value: Any, length: int) -> str | None:
    return None if value is None else str(value)[:length]
