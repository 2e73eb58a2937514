"""Tables as JSON or CSV: an operation that answers a report also answers
``Accept: text/csv`` with the report's rows (the spec lists both media types)."""

from __future__ import annotations

import csv
import io
from typing import Any

from gateway.calls import Response, header, json_response

CSV = "text/csv"


def prefers_csv(accept: str | None) -> bool:
    """Whether ``Accept`` ranks CSV above JSON (by q-value, then by order)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept or "").split(",")):
        media, *parameters = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media in (CSV, "application/json") and quality > 0:
            ranked.append((-quality, position, media))
    return bool(ranked) and min(ranked)[2] == CSV


def table(answer: dict[str, Any], columns: tuple[str, ...], name: str) -> Response:
    """The report as JSON, or its ``items`` as CSV when the caller prefers it."""
    if not prefers_csv(header("Accept")):
        return json_response(answer)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(answer["items"])
    filename = f"{name}-{answer['currency']}-{answer['start'][:10]}.csv"
    return (
        buffer.getvalue(),
        200,
        {
            "Content-Type": CSV,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
