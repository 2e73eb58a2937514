"""Which deliveries an event makes: notifications to the customer, calls to webhooks.

:func:`plan` runs inside the transaction that marks the event handled (``handle_once``):
an event and the deliveries it causes are recorded together, then sent by the
dispatcher. Nothing here sends or renders: a missing address is recorded as ``skipped``
(audited) and the other channels go on; a template error shows when it is sent.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db import utcnow
from common.events import redact_secrets
from svc_notify import preferences
from svc_notify.models import Delivery, DeliveryAttempt, WebhookEndpoint

#: Account-security emails: always by email to the address in the event, whatever the
#: preferences say (they are how a customer gets into their account).
SECURITY_TEMPLATES = {
    "user.registered": "verify_email",
    "user.verification_requested": "verify_email",
    "user.password_reset_requested": "password_reset",
}
#: Order and payment news: by the channels the customer chose.
CUSTOMER_TEMPLATES = {
    "order.paid": "order_paid",
    "order.shipped": "order_shipped",
    "order.cancelled": "order_cancelled",
    "payment.failed": "payment_failed",
    "payment.refunded": "payment_refunded",
}
#: Operations news: by email to the operators' address (``NOTIFY_ADMIN_EMAIL``).
ADMIN_TEMPLATES = {
    "analytics.anomaly.detected": "anomaly_detected",
}
#: What admins may subscribe webhook endpoints to ("*": all of these). Account events
#: are not offered: they carry personal data and one-time tokens.
WEBHOOK_EVENT_TYPES = (
    "order.created",
    "order.paid",
    "order.shipped",
    "order.delivered",
    "order.cancelled",
    "order.refunded",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "analytics.anomaly.detected",
)
#: Every event type svc_notify consumes, by the service that publishes it.
CONSUMED = {
    source: tuple(t for t in (*SECURITY_TEMPLATES, *WEBHOOK_EVENT_TYPES) if t.startswith(prefix))
    for source, prefix in (
        ("auth", "user."),
        ("order", "order."),
        ("payment", "payment."),
        ("analytics", "analytics."),
    )
}


@dataclass(frozen=True)
class Recipient:
    #: None: not a customer (the operators' address).
    user_id: str | None
    email: str | None
    phone: str | None
    name: str | None


class Directory(Protocol):
    """Who a customer is and whose an order is (auth and order over RPC)."""

    def user(self, user_id: str) -> dict[str, Any] | None: ...

    def order(self, order_id: str) -> dict[str, Any] | None: ...


def recipient_for(
    envelope: dict[str, Any], directory: Directory, admin_email: str | None = None
) -> Recipient | None:
    """Who to notify about this event (a customer, or the operators' ``admin_email``
    for operations news), or None (nobody to tell)."""
    event_type, data = envelope["type"], envelope["data"]
    if event_type in ADMIN_TEMPLATES:
        return Recipient(None, admin_email or None, None, "Bookstore operations")
    if event_type in SECURITY_TEMPLATES:
        return Recipient(str(data["user_id"]), data.get("email"), None, data.get("name"))
    if event_type not in CUSTOMER_TEMPLATES:
        return None
    if event_type.startswith("payment."):
        order = directory.order(str(data["order_id"]))
        if order is None:
            return None
        user_id = str(order["user_id"])
    else:
        user_id = str(data["user_id"])
        customer = data.get("customer")
        if isinstance(customer, dict) and "email" in customer:
            # Order events carry who to write to (docs/decisions/0085); older ones do not.
            return Recipient(
                user_id, customer.get("email"), customer.get("phone"), customer.get("name")
            )
    user = directory.user(user_id)
    if user is None:  # deleted since: nobody to write to
        return Recipient(user_id, None, None, None)
    return Recipient(user_id, user.get("email"), user.get("phone"), user.get("name"))


def template_context(
    envelope: dict[str, Any], recipient: Recipient, web_url: str
) -> dict[str, Any]:
    data = envelope["data"]
    context: dict[str, Any] = {
        "name": recipient.name,
        "web_url": web_url,
        "preferences_url": f"{web_url}/account/notifications",
    }
    if envelope["type"] in SECURITY_TEMPLATES:
        token_field = "reset_token" if "reset_token" in data else "verification_token"
        expiry_field = "reset_expires_at" if "reset_token" in data else "verification_expires_at"
        context |= {"token": data.get(token_field), "expires_at": data.get(expiry_field)}
    elif envelope["type"] in ADMIN_TEMPLATES:
        context |= {"anomaly": data, "preferences_url": None}  # not a customer's choice
    elif envelope["type"].startswith("payment."):
        context["payment"] = data
    else:
        context["order"] = data
    return context


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
    event_type, data = envelope["type"], envelope["data"]
    if recipient is None:
        return []
    if event_type in SECURITY_TEMPLATES:
        if not data.get("verification_token") and not data.get("reset_token"):
            return []  # an account an operator created: nothing to confirm
        template, channels = SECURITY_TEMPLATES[event_type], {"email"}
    elif event_type in ADMIN_TEMPLATES:
        template, channels = ADMIN_TEMPLATES[event_type], {"email"}
    else:
        if event_type == "order.cancelled" and data.get("cancel_reason") == "payment_declined":
            return []  # payment.failed tells the customer, with the reason
        template = CUSTOMER_TEMPLATES[event_type]
        chosen = preferences.get(session, recipient.user_id)
        channels = {channel for channel in ("email", "sms") if chosen[channel]}
        if template not in sms_templates:
            channels.discard("sms")
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
