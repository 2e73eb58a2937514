"""The sales chart as SVG, drawn here from the sales report: orders as bars, revenue as
a line, anomalous buckets marked in red. Plain SVG text, no plotting library: the
service image stays lean and the picture is a few kilobytes any browser shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from common.money import digits
from svc_analytics.domain import parse_time

WIDTH, HEIGHT = 960, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 70, 40, 50


def render(sales: dict[str, Any], anomalies: list[dict[str, Any]]) -> str:
    """An SVG document of ``sales`` (reports.sales) with ``anomalies`` (reports.anomalies
    items) marked on the buckets that hold them."""
    items = sales["items"]
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(len(items), 1)
    step = plot_width / count
    max_orders = max([item["orders"] for item in items] + [1])
    max_revenue = max([item["gross"] for item in items] + [1])
    unit = 10 ** digits(sales["currency"])
    marked = _marked_buckets(items, anomalies)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(_title(sales))}</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">{escape(_title(sales))}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_height}" x2="{LEFT + plot_width}" '
        f'y2="{TOP + plot_height}" stroke="#444"/>',
        f'<text x="{LEFT - 8}" y="{TOP + 4}" text-anchor="end">{max_orders}</text>',
        f'<text x="{LEFT - 8}" y="{TOP + plot_height}" text-anchor="end">0</text>',
        f'<text x="{LEFT + plot_width + 8}" y="{TOP + 4}">'
        f"{max_revenue / unit:,.0f} {escape(sales['currency'])}</text>",
    ]
    points = []
    for index, item in enumerate(items):
        x = LEFT + index * step
        height = plot_height * item["orders"] / max_orders
        fill = "#d62728" if index in marked else "#9ecae1"
        parts.append(
            f'<rect class="orders{" anomaly" if index in marked else ""}" x="{x:.1f}" '
            f'y="{TOP + plot_height - height:.1f}" width="{max(step - 1, 0.5):.1f}" '
            f'height="{height:.1f}" fill="{fill}"><title>{escape(item["start"])}: '
            f"{item['orders']} orders, {item['gross'] / unit:,.2f} "
            f"{escape(sales['currency'])}</title></rect>"
        )
        y = TOP + plot_height - plot_height * item["gross"] / max_revenue
        points.append(f"{x + step / 2:.1f},{y:.1f}")
    if points:
        parts.append(
            f'<polyline class="revenue" fill="none" stroke="#08519c" stroke-width="2" '
            f'points="{" ".join(points)}"/>'
        )
    for index in sorted(marked):
        x = LEFT + index * step + step / 2
        parts.append(
            f'<circle class="anomaly-marker" cx="{x:.1f}" cy="{TOP - 6}" r="4" fill="#d62728"/>'
        )
    if items:
        parts.append(
            f'<text x="{LEFT}" y="{HEIGHT - 20}">{escape(items[0]["start"])}</text>'
            f'<text x="{LEFT + plot_width}" y="{HEIGHT - 20}" text-anchor="end">'
            f"{escape(items[-1]['end'])}</text>"
        )
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 5}" text-anchor="middle">bars: orders; '
        "line: gross revenue; red: anomaly</text></svg>"
    )
    return "\n".join(parts)


def _title(sales: dict[str, Any]) -> str:
    return f"Sales {sales['start']} to {sales['end']} ({sales['granularity']}, {sales['currency']})"


def _marked_buckets(items: list[dict[str, Any]], anomalies: list[dict[str, Any]]) -> set[int]:
    bounds: list[tuple[datetime, datetime]] = [
        (parse_time(item["start"]), parse_time(item["end"])) for item in items
    ]
    marked = set()
    for anomaly in anomalies:
        moment = parse_time(anomaly["window_start"])
        for index, (start, end) in enumerate(bounds):
            if start <= moment < end:
                marked.add(index)
                break
    return marked
