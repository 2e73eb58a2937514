"""The cart and orders: svc_order behind ``/cart``, ``/orders`` and ``/admin/orders``.

Customers' calls pass the caller as the owner, so svc_order answers only with their own
cart and orders; admin operations pass no owner.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response as StarletteResponse

from gateway.calls import Response, call, empty_response, header, json_response
from gateway.settings import API_BASE_PATH


async def get_cart(user: str) -> Response:
    return json_response(await call("order", "get_cart", user))


async def clear_cart(user: str) -> StarletteResponse:
    await call("order", "clear_cart", user)
    return empty_response(204)


async def set_cart_item(user: str, product_id: str, body: dict[str, Any]) -> Response:
    return json_response(await call("order", "set_cart_item", user, product_id, body["quantity"]))


async def remove_cart_item(user: str, product_id: str) -> Response:
    return json_response(await call("order", "remove_cart_item", user, product_id))


async def place_order(user: str, body: dict[str, Any]) -> Response:
    order = await call("order", "place_order", user, body, header("Idempotency-Key"))
    return json_response(order, 201, {"Location": f"{API_BASE_PATH}/orders/{order['id']}"})


async def list_orders(
    user: str, limit: int, cursor: str | None = None, status: str | None = None
) -> Response:
    return json_response(
        await call("order", "list_orders", user_id=user, status=status, cursor=cursor, limit=limit)
    )


async def get_order(user: str, order_id: str) -> Response:
    return json_response(await call("order", "get_order", order_id, user))


async def cancel_order(user: str, order_id: str) -> Response:
    return json_response(await call("order", "cancel_order", order_id, user, user))


async def admin_list_orders(
    limit: int, cursor: str | None = None, status: str | None = None
) -> Response:
    return json_response(
        await call("order", "list_orders", user_id=None, status=status, cursor=cursor, limit=limit)
    )


async def admin_get_order(order_id: str) -> Response:
    return json_response(await call("order", "get_order", order_id, None))


async def admin_ship_order(user: str, order_id: str) -> Response:
    return json_response(await call("order", "ship_order", order_id, user))


async def admin_deliver_order(user: str, order_id: str) -> Response:
    return json_response(await call("order", "deliver_order", order_id, user))


async def admin_cancel_order(user: str, order_id: str) -> Response:
    return json_response(await call("order", "cancel_order", order_id, user, None))


async def get_order_payments(user: str, order_id: str) -> Response:
    return json_response(await call("order", "get_order_payments", order_id, user))


async def refund_order(user: str, order_id: str, body: dict[str, Any]) -> Response:
    return json_response(
        await call("order", "refund_order", order_id, user, body["reason"], body.get("amount"))
    )
