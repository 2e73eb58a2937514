"""Webhook endpoints (registered by admins), their delivery history, replays; and the
notification audit log. What crosses the wire is in openapi/bookstore.yaml."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import schemas
from common.db import isoformat, parse_id, utcnow
from common.errors import Conflict, InvalidInput, NotFound
from common.pagination import Filter, filtered, newest_first
from svc_notify.domain import WEBHOOK_EVENT_TYPES
from svc_notify.models import Delivery, DeliveryAttempt, WebhookEndpoint

CHANNELS = ("email", "sms", "webhook")
DELIVERY_STATUSES = ("pending", "sent", "parked", "skipped")
ATTEMPT_OUTCOMES = ("sent", "failed", "parked", "skipped")


def endpoint_to_dict(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The endpoint as admins see it: never its secret (only the answer that creates it
    shows that, once)."""
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "active": endpoint.active,
        "created_at": isoformat(endpoint.created_at),
    }


def create_endpoint(
    session: Session, request: dict[str, Any], refusal: Callable[[str], str | None]
) -> dict[str, Any]:
    """Registers an endpoint; ``refusal(url)`` says why a destination is not allowed
    (not a public address: ``WebhookPoster.refusal``)."""
    schemas.validate("WebhookEndpointCreate", request)
    url = request["url"]
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput("url: must be an absolute http or https URL.", {"field": "url"})
    refused = refusal(url)
    if refused:
        raise InvalidInput(f"url: not allowed: {refused}.", {"field": "url"})
    unknown = sorted(set(request["event_types"]) - {*WEBHOOK_EVENT_TYPES, "*"})
    if unknown:
        raise InvalidInput(
            f"event_types: {', '.join(unknown)} cannot be subscribed to; choose from "
            f"{', '.join(WEBHOOK_EVENT_TYPES)} or *.",
            {"field": "event_types"},
        )
    secret = request.get("secret") or f"whsec_{secrets.token_urlsafe(32)}"
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        url=url,
        event_types=sorted(set(request["event_types"])),
        secret=secret,
        description=request.get("description"),
        active=True,
    )
    session.add(endpoint)
    session.commit()
    session.refresh(endpoint)
    return {**endpoint_to_dict(endpoint), "secret": secret}


def _endpoint(session: Session, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, parse_id(endpoint_id, "endpoint_id"))
    if endpoint is None or not endpoint.active:
        raise NotFound("No such webhook endpoint.", {"endpoint_id": endpoint_id})
    return endpoint


def get_endpoint(session: Session, endpoint_id: str) -> dict[str, Any]:
    return endpoint_to_dict(_endpoint(session, endpoint_id))


def delete_endpoint(session: Session, endpoint_id: str) -> None:
    """Stops deliveries to it (pending ones are parked when their turn comes); its
    history stays readable."""
    _endpoint(session, endpoint_id).active = False
    session.commit()


def list_endpoints(
    session: Session, cursor: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    return newest_first(
        session,
        select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True)),
        WebhookEndpoint.created_at,
        WebhookEndpoint.id,
        filters={},
        cursor=cursor,
        limit=limit,
        to_dict=endpoint_to_dict,
    )


def delivery_to_dict(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "channel": delivery.channel,
        "event_id": str(delivery.event_id),
        "event_type": delivery.event_type,
        "endpoint_id": None if delivery.endpoint_id is None else str(delivery.endpoint_id),
        "user_id": None if delivery.user_id is None else str(delivery.user_id),
        "recipient": delivery.recipient,
        "template": delivery.template,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": isoformat(delivery.next_attempt_at),
        "last_error": delivery.last_error,
        "provider_message_id": delivery.provider_message_id,
        "correlation_id": delivery.correlation_id,
        "created_at": isoformat(delivery.created_at),
        "updated_at": isoformat(delivery.updated_at),
    }


DELIVERY_FILTERS = {
    "status": Filter(lambda status: Delivery.status == status, allowed=DELIVERY_STATUSES),
}
ATTEMPT_FILTERS = {
    "user_id": Filter(lambda user_id: Delivery.user_id == parse_id(user_id, "user_id")),
    "channel": Filter(lambda channel: Delivery.channel == channel, allowed=CHANNELS),
    "outcome": Filter(lambda outcome: DeliveryAttempt.outcome == outcome, allowed=ATTEMPT_OUTCOMES),
    "event_id": Filter(lambda event_id: Delivery.event_id == parse_id(event_id, "event_id")),
}


def list_deliveries(
    session: Session,
    endpoint_id: str,
    status: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """An endpoint's deliveries, newest first (deleted endpoints' too)."""
    endpoint = session.get(WebhookEndpoint, parse_id(endpoint_id, "endpoint_id"))
    if endpoint is None:
        raise NotFound("No such webhook endpoint.", {"endpoint_id": endpoint_id})
    query, filters = filtered(
        select(Delivery).where(Delivery.endpoint_id == endpoint.id),
        {"status": status},
        DELIVERY_FILTERS,
    )
    filters["endpoint_id"] = endpoint_id
    return newest_first(
        session,
        query,
        Delivery.created_at,
        Delivery.id,
        filters=filters,
        cursor=cursor,
        limit=limit,
        to_dict=delivery_to_dict,
    )


def get_delivery(session: Session, delivery_id: str) -> dict[str, Any]:
    delivery = session.get(Delivery, parse_id(delivery_id, "delivery_id"))
    if delivery is None:
        raise NotFound("No such delivery.", {"delivery_id": delivery_id})
    return delivery_to_dict(delivery)


def replay_delivery(session: Session, delivery_id: str) -> dict[str, Any]:
    """A parked delivery (of any channel) goes back to pending with a full set of
    attempts; its earlier attempts stay in the audit log."""
    delivery = session.get(Delivery, parse_id(delivery_id, "delivery_id"), with_for_update=True)
    if delivery is None:
        raise NotFound("No such delivery.", {"delivery_id": delivery_id})
    if delivery.status != "parked":
        raise Conflict(
            f"Only parked deliveries can be replayed; this one is {delivery.status}.",
            {"status": delivery.status},
        )
    delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()
    session.commit()
    session.refresh(delivery)
    return delivery_to_dict(delivery)


def attempt_to_dict(attempt: DeliveryAttempt) -> dict[str, Any]:
    delivery = attempt.delivery
    return {
        "id": str(attempt.id),
        "delivery_id": str(delivery.id),
        "attempt": attempt.attempt,
        "outcome": attempt.outcome,
        "user_id": None if delivery.user_id is None else str(delivery.user_id),
        "channel": delivery.channel,
        "template": delivery.template,
        "recipient": delivery.recipient,
        "endpoint_id": None if delivery.endpoint_id is None else str(delivery.endpoint_id),
        "event_id": str(delivery.event_id),
        "event_type": delivery.event_type,
        "error": attempt.error,
        "provider_message_id": attempt.provider_message_id,
        "response_status": attempt.response_status,
        "duration_ms": attempt.duration_ms,
        "correlation_id": delivery.correlation_id,
        "attempted_at": isoformat(attempt.attempted_at),
    }


def list_attempts(
    session: Session,
    *,
    user_id: str | None = None,
    channel: str | None = None,
    outcome: str | None = None,
    event_id: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The audit log: every try of every notification and webhook call, newest first."""
    query, filters = filtered(
        select(DeliveryAttempt).join(DeliveryAttempt.delivery),
        {"user_id": user_id, "channel": channel, "outcome": outcome, "event_id": event_id},
        ATTEMPT_FILTERS,
    )
    return newest_first(
        session,
        query,
        DeliveryAttempt.attempted_at,
        DeliveryAttempt.id,
        filters=filters,
        cursor=cursor,
        limit=limit,
        to_dict=attempt_to_dict,
    )
