"""Notify's rules, in plain Python (no broker, no database): which events tell the
customer what and by which channel, what a template is given, which events webhooks may
receive, and the retry schedule of a delivery."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from common.backoff import backoff_delay

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
    envelope: dict[str, Any], directory: Directory | None, admin_email: str | None = None
) -> Recipient | None:
    """Who to notify about this event (a customer, or the operators' ``admin_email``
    for operations news), or None (nobody to tell)."""
    event_type, data = envelope["type"], envelope["data"]
    if event_type in ADMIN_TEMPLATES:
        return Recipient(None, admin_email or None, None, "Bookstore operations")
    if event_type in SECURITY_TEMPLATES:
        return Recipient(str(data["user_id"]), data.get("email"), None, data.get("name"))
    if event_type not in CUSTOMER_TEMPLATES or directory is None:
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


def notification_for(
    envelope: dict[str, Any],
    chosen_channels: Callable[[], Mapping[str, Any]],
    sms_templates: set[str],
) -> tuple[str, set[str]] | None:
    """The template and channels of the customer's notification about this event, or
    None (nothing to tell). ``chosen_channels`` gives the customer's preferences; it is
    only asked for order and payment news."""
    event_type, data = envelope["type"], envelope["data"]
    if event_type in SECURITY_TEMPLATES:
        if not data.get("verification_token") and not data.get("reset_token"):
            return None  # an account an operator created: nothing to confirm
        return SECURITY_TEMPLATES[event_type], {"email"}
    if event_type in ADMIN_TEMPLATES:
        return ADMIN_TEMPLATES[event_type], {"email"}
    if event_type == "order.cancelled" and data.get("cancel_reason") == "payment_declined":
        return None  # payment.failed tells the customer, with the reason
    template = CUSTOMER_TEMPLATES[event_type]
    chosen = chosen_channels()
    channels = {channel for channel in ("email", "sms") if chosen[channel]}
    if template not in sms_templates:
        channels.discard("sms")
    return template, channels


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_seconds: float = 30.0
    max_seconds: float = 3600.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Exponential backoff with "equal jitter": at least half the bound, so delays
        still grow, and a random rest, so endpoints that failed together are not all
        called again at the same moment."""
        return backoff_delay(
            attempt, base=self.base_seconds, cap=self.max_seconds, jitter="equal", rand=rand
        )

    def gives_up(self, attempt: int, permanent: bool) -> bool:
        """Whether a delivery whose ``attempt``-th try failed is parked rather than tried
        again: after the last attempt, or at once when no retry can help."""
        return permanent or attempt >= self.max_attempts
