"""Notifications: svc_notify behind ``/me/notification-preferences``, ``/admin/notifications``,
``/admin/webhooks`` and ``/admin/deliveries``."""

from __future__ import annotations

from typing import Any

from flask import Response as FlaskResponse

from gateway.calls import Response, call, empty_response, json_response
from gateway.settings import API_BASE_PATH


def get_notification_preferences(user: str) -> Response:
    return json_response(call("notify", "get_preferences", user))


def set_notification_preferences(user: str, body: dict[str, Any]) -> Response:
    return json_response(call("notify", "set_preferences", user, body))


def list_notification_attempts(
    limit: int,
    cursor: str | None = None,
    user_id: str | None = None,
    channel: str | None = None,
    outcome: str | None = None,
    event_id: str | None = None,
) -> Response:
    return json_response(
        call(
            "notify",
            "list_notification_attempts",
            user_id=user_id,
            channel=channel,
            outcome=outcome,
            event_id=event_id,
            cursor=cursor,
            limit=limit,
        )
    )


def list_webhook_endpoints(limit: int, cursor: str | None = None) -> Response:
    return json_response(call("notify", "list_webhook_endpoints", cursor=cursor, limit=limit))


def create_webhook_endpoint(body: dict[str, Any]) -> Response:
    endpoint = call("notify", "create_webhook_endpoint", body)
    return json_response(
        endpoint, 201, {"Location": f"{API_BASE_PATH}/admin/webhooks/{endpoint['id']}"}
    )


def get_webhook_endpoint(endpoint_id: str) -> Response:
    return json_response(call("notify", "get_webhook_endpoint", endpoint_id))


def delete_webhook_endpoint(endpoint_id: str) -> FlaskResponse:
    call("notify", "delete_webhook_endpoint", endpoint_id)
    return empty_response(204)


def list_webhook_deliveries(
    endpoint_id: str, limit: int, cursor: str | None = None, status: str | None = None
) -> Response:
    return json_response(
        call("notify", "list_deliveries", endpoint_id, status=status, cursor=cursor, limit=limit)
    )


def replay_delivery(delivery_id: str) -> Response:
    return json_response(call("notify", "replay_delivery", delivery_id))
