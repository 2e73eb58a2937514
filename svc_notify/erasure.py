"""Forgetting a deleted account (auth's ``user.deleted``): what notify holds about the
person goes, what it did stays auditable under the (meaningless on its own) user id.

- Emails and text messages to them that are still waiting (``pending``, or ``parked``
  and so replayable) are never sent: ``skipped``, with the reason in the audit log.
- Every email and SMS delivery to them loses its address and content (name, order
  details, links): the audit keeps channel, template, outcome and times.
- Their channel preferences are deleted.

Webhook calls are not touched: they go to an administrator's endpoint, not to the
person (their bodies are the events themselves).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from common.db import parse_id
from svc_notify.models import Delivery, DeliveryAttempt, Preference

PERSONAL_CHANNELS = ("email", "sms")
REASON = "the account was deleted"


def forget_user(session: Session, user_id: str) -> dict[str, Any]:
    """Applies the above in ``session``'s transaction (the caller commits); returns
    counts. Idempotent: a second run finds nothing left to stop or scrub."""
    user = parse_id(user_id, "user_id")
    # Locks wait for a send in progress (the dispatcher holds its row while it sends).
    deliveries = session.scalars(
        select(Delivery)
        .where(Delivery.user_id == user, Delivery.channel.in_(PERSONAL_CHANNELS))
        .with_for_update()
    ).all()
    stopped = scrubbed = 0
    for delivery in deliveries:
        if delivery.status in ("pending", "parked"):
            delivery.status, delivery.next_attempt_at, delivery.last_error = (
                "skipped",
                None,
                REASON,
            )
            session.add(
                DeliveryAttempt(
                    id=uuid.uuid4(),
                    delivery_id=delivery.id,
                    attempt=delivery.attempts,
                    outcome="skipped",
                    error=REASON,
                )
            )
            stopped += 1
        if delivery.recipient is not None or delivery.content:
            delivery.recipient, delivery.content = None, {}
            scrubbed += 1
    preferences = session.execute(delete(Preference).where(Preference.user_id == user)).rowcount
    return {"stopped": stopped, "scrubbed": scrubbed, "preferences": preferences}
