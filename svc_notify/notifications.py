"""Which deliveries an event makes: notifications to the customer, calls to webhooks,
recorded in the database (who is told what, by which channel, is decided in
svc_notify/domain.py).

:func:`plan` runs inside the transaction that marks the event handled (``handle_once``):
an event and the deliveries it causes are recorded together, then sent by the
dispatcher. Nothing here sends or renders: a missing address is recorded as ``skipped``
(audited) and the other channels go on; a template error shows when it is sent.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db import utcnow
from common.events import redact_secrets
from svc_notify import preferences
from svc_notify.domain import (
    WEBHOOK_EVENT_TYPES,
    Recipient,
    notification_for,
    template_context,
)
from svc_notify.models import Delivery, DeliveryAttempt, WebhookEndpoint


def plan(
    session: Session,
    envelope: dict[str, Any],
    recipient: Recipient | None,
    *,
    web_url: str,
    sms_templates: set[str],
) -> list[Delivery]:
    """Adds the event's deliveries to ``session``; returns them. ``sms_templates``: the
    notifications that have an SMS version."""
    deliveries = [*_notifications(session, envelope, recipient, web_url, sms_templates)]
    deliveries += _webhook_calls(session, envelope)
    session.add_all(deliveries)
    session.flush()
    for delivery in deliveries:
        if delivery.status == "skipped":
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id, attempt=0, outcome="skipped", error=delivery.last_error
                )
            )
    return deliveries


def _delivery(envelope: dict[str, Any], channel: str, **fields: Any) -> Delivery:
    values = {
        "id": uuid.uuid4(),
        "channel": channel,
        "event_id": uuid.UUID(str(envelope["id"])),
        "event_type": envelope["type"],
        "correlation_id": envelope.get("correlation_id"),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": utcnow(),
    }
    return Delivery(**(values | fields))


def _notifications(
    session: Session,
    envelope: dict[str, Any],
    recipient: Recipient | None,
    web_url: str,
    sms_templates: set[str],
) -> list[Delivery]:
    if recipient is None:
        return []
    decided = notification_for(
        envelope, lambda: preferences.get(session, recipient.user_id), sms_templates
    )
    if decided is None:
        return []
    template, channels = decided
    context = template_context(envelope, recipient, web_url)
    addresses = {"email": recipient.email, "sms": recipient.phone}
    missing = {"email": "no email address", "sms": "no phone number"}
    deliveries = []
    for channel in sorted(channels):
        address = addresses[channel]
        deliveries.append(
            _delivery(
                envelope,
                channel,
                user_id=uuid.UUID(recipient.user_id) if recipient.user_id else None,
                recipient=address,
                template=template,
                content={"context": context},
                **(
                    {}
                    if address
                    else {
                        "status": "skipped",
                        "last_error": missing[channel],
                        "next_attempt_at": None,
                    }
                ),
            )
        )
    return deliveries


def _webhook_calls(session: Session, envelope: dict[str, Any]) -> list[Delivery]:
    event_type = envelope["type"]
    if event_type not in WEBHOOK_EVENT_TYPES:
        return []
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.active.is_(True),
            WebhookEndpoint.event_types.overlap([event_type, "*"]),
        )
    ).all()
    body = json.dumps(redact_secrets(envelope), separators=(",", ":"), sort_keys=True)
    return [
        _delivery(
            envelope,
            "webhook",
            endpoint_id=endpoint.id,
            recipient=endpoint.url,
            content={"body": body},
        )
        for endpoint in endpoints
    ]
