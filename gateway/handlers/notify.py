"""Notifications: svc_notify behind ``/me/notification-preferences``, ``/admin/notifications``,
``/admin/webhooks`` and ``/admin/deliveries``."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response as StarletteResponse

from gateway.calls import Response, call, empty_response, json_response
from gateway.settings import API_BASE_PATH


async def get_notification_preferences(user: str) -> Response:
    return json_response(await call("notify", "get_preferences", user))


async def set_notification_preferences(user: str, body: dict[str, Any]) -> Response:
    return json_response(await call("notify", "set_preferences", user, body))


async def list_notification_attempts(
    limit: int,
    cursor: str | None = None,
    user_id: str | None = None,
    channel: str | None = None,
    outcome: str | None = None,
    event_id: str | None = None,
) -> Response:
    return json_response(
        await call(
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


async def list_webhook_endpoints(limit: int, cursor: str | None = None) -> Response:
    return json_response(await call("notify", "list_webhook_endpoints", cursor=cursor, limit=limit))


async def create_webhook_endpoint(body: dict[str, Any]) -> Response:
    endpoint = await call("notify", "create_webhook_endpoint", body)
    return json_response(
        endpoint, 201, {"Location": f"{API_BASE_PATH}/admin/webhooks/{endpoint['id']}"}
    )


async def get_webhook_endpoint(endpoint_id: str) -> Response:
    return json_response(await call("notify", "get_webhook_endpoint", endpoint_id))


async def delete_webhook_endpoint(endpoint_id: str) -> StarletteResponse:
    await call("notify", "delete_webhook_endpoint", endpoint_id)
    return empty_response(204)


async def list_webhook_deliveries(
    endpoint_id: str, limit: int, cursor: str | None = None, status: str | None = None
) -> Response:
    return json_response(
        await call(
            "notify", "list_deliveries", endpoint_id, status=status, cursor=cursor, limit=limit
        )
    )


async def replay_delivery(delivery_id: str) -> Response:
    return json_response(await call("notify", "replay_delivery", delivery_id))
