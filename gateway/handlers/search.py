"""Search, autocomplete and recommendations (svc_search), and reviews (svc_catalog):
``/search``, ``/search/suggest``, ``/recommendations`` and the book's
``/reviews`` and ``/also-bought``."""

from __future__ import annotations

from typing import Any

from gateway.calls import Response, call, header, json_response


async def search_books(
    limit: int,
    q: str | None = None,
    category: str | None = None,
    author: str | None = None,
    price_min: int | None = None,
    price_max: int | None = None,
    rating_min: float | None = None,
    in_stock: bool | None = None,
    sort: str | None = None,
    cursor: str | None = None,
) -> Response:
    filters = {
        "category_id": category,
        "author": author,
        "price_min": price_min,
        "price_max": price_max,
        "rating_min": rating_min,
        "in_stock": in_stock,
    }
    return json_response(
        await call(
            "search",
            "search",
            q=q,
            filters={name: value for name, value in filters.items() if value is not None},
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
    )


async def suggest_search(q: str, limit: int) -> Response:
    return json_response(await call("search", "suggest", q=q, limit=limit))


async def list_reviews(product_id: str, limit: int, cursor: str | None = None) -> Response:
    return json_response(
        await call("catalog", "list_reviews", product_id, cursor=cursor, limit=limit)
    )


async def create_review(user: str, product_id: str, body: dict[str, Any]) -> Response:
    review = await call(
        "catalog",
        "create_review",
        product_id,
        user,
        body,
        idempotency_key=header("Idempotency-Key"),
    )
    return json_response(review, 201)


async def list_also_bought(product_id: str, limit: int) -> Response:
    return json_response(await call("search", "also_bought", product_id, limit=limit))


async def get_recommendations(user: str, limit: int) -> Response:
    return json_response(await call("search", "recommendations", user, limit=limit))
