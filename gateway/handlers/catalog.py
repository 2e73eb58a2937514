"""Books and categories: svc_catalog behind ``/products`` and ``/categories``."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response as StarletteResponse

from common.errors import NotFound
from gateway.calls import Response, call, empty_response, header, json_response
from gateway.conditional import etag, expected_version, none_match
from gateway.settings import API_BASE_PATH


async def list_products(
    limit: int,
    sort: str,
    cursor: str | None = None,
    category: str | None = None,
    author: str | None = None,
    price_min: int | None = None,
    price_max: int | None = None,
) -> Response:
    filters = {
        "category_id": category,
        "author": author,
        "price_min": price_min,
        "price_max": price_max,
    }
    return json_response(
        await call(
            "catalog",
            "list_products",
            filters={name: value for name, value in filters.items() if value is not None},
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
    )


async def create_product(body: dict[str, Any]) -> Response:
    product = await call(
        "catalog", "create_product", body, idempotency_key=header("Idempotency-Key")
    )
    return json_response(
        product,
        201,
        {
            "Location": f"{API_BASE_PATH}/products/{product['id']}",
            "ETag": etag(product["version"]),
        },
    )


async def get_product(product_id: str) -> Response | StarletteResponse:
    product = await call("catalog", "get_product", product_id)
    current = etag(product["version"])
    if none_match(header("If-None-Match"), current):
        return empty_response(304, {"ETag": current})
    return json_response(product, 200, {"ETag": current})


async def update_product(product_id: str, body: dict[str, Any]) -> Response:
    product = await call(
        "catalog",
        "update_product",
        product_id,
        body,
        expected_version=expected_version(header("If-Match")),
    )
    return json_response(product, 200, {"ETag": etag(product["version"])})


async def delete_product(product_id: str) -> StarletteResponse:
    await call(
        "catalog",
        "delete_product",
        product_id,
        expected_version=expected_version(header("If-Match")),
    )
    return empty_response(204)


async def list_categories(limit: int, cursor: str | None = None) -> Response:
    return json_response(await call("catalog", "list_categories", cursor=cursor, limit=limit))


async def create_category(body: dict[str, Any]) -> Response:
    category = await call(
        "catalog", "create_category", body, idempotency_key=header("Idempotency-Key")
    )
    return json_response(
        category, 201, {"Location": f"{API_BASE_PATH}/categories/{category['id']}"}
    )


async def get_category(category_id: str) -> Response:
    return json_response(await call("catalog", "get_category", category_id))


async def get_availability(product_id: str) -> Response:
    products = (await call("catalog", "availability", [product_id]))["products"]
    product = products.get(product_id)
    if product is None or not product["purchasable"]:
        raise NotFound("No such product.", {"product_id": product_id})
    available = product["available"]
    return json_response(
        {"product_id": product_id, "available": available, "in_stock": available > 0}
    )


async def get_stock(product_id: str) -> Response:
    return json_response(await call("catalog", "get_stock", product_id))


async def set_stock(product_id: str, body: dict[str, Any]) -> Response:
    stock = await call(
        "catalog", "set_stock", product_id, body["on_hand"], body.get("low_stock_threshold")
    )
    return json_response(stock)


async def request_image_upload(product_id: str, body: dict[str, Any]) -> Response:
    form = await call("catalog", "request_image_upload", product_id, body["content_type"])
    return json_response(form, 201)


async def confirm_image_upload(product_id: str, body: dict[str, Any]) -> Response:
    product = await call("catalog", "confirm_image_upload", product_id, body["key"])
    return json_response(product, 200, {"ETag": etag(product["version"])})


async def reorder_product_images(product_id: str, body: dict[str, Any]) -> Response:
    product = await call("catalog", "reorder_product_images", product_id, body["image_ids"])
    return json_response(product, 200, {"ETag": etag(product["version"])})


async def delete_product_image(product_id: str, image_id: str) -> Response:
    product = await call("catalog", "delete_product_image", product_id, image_id)
    return json_response(product, 200, {"ETag": etag(product["version"])})
