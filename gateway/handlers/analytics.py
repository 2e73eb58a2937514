"""Business analytics for admins (``admin:orders``): svc_analytics behind
``/admin/analytics``. Each table answers JSON, or CSV for ``Accept: text/csv``; the
chart is SVG drawn by the service."""

from __future__ import annotations

from starlette.responses import Response as StarletteResponse

from gateway.calls import Response, call
from gateway.tables import table

SALES_COLUMNS = (
    "start",
    "end",
    "orders",
    "units",
    "gross",
    "refunds",
    "net",
    "average_order_value",
    "checkouts",
    "conversion_bp",
    "late_orders",
    "closed",
)


async def get_analytics_sales(
    start: str, end: str, currency: str, granularity: str = "1h"
) -> Response:
    answer = await call("analytics", "sales", start, end, granularity, currency)
    return table(answer, SALES_COLUMNS, "sales")


async def get_analytics_sales_chart(
    start: str, end: str, currency: str, granularity: str = "1h"
) -> StarletteResponse:
    answer = await call("analytics", "sales_chart", start, end, granularity, currency)
    return StarletteResponse(answer["svg"], 200, media_type="image/svg+xml")


async def get_analytics_top_products(
    start: str, end: str, currency: str, limit: int = 10
) -> Response:
    answer = await call("analytics", "top_products", start, end, currency, limit)
    return table(answer, ("product_id", "title", "units", "revenue"), "top-products")


async def get_analytics_regions(start: str, end: str, currency: str) -> Response:
    answer = await call("analytics", "regions", start, end, currency)
    return table(answer, ("country", "orders", "revenue"), "regions")


async def get_analytics_peak_hours(start: str, end: str, currency: str) -> Response:
    answer = await call("analytics", "peak_hours", start, end, currency)
    return table(answer, ("day", "hour", "orders", "gross"), "peak-hours")


async def get_analytics_anomalies(start: str, end: str, currency: str) -> Response:
    answer = await call("analytics", "anomalies", start, end, currency)
    columns = ("window_start", "window_end", "metric", "value", "baseline", "score", "direction")
    return table(answer, columns, "anomalies")
