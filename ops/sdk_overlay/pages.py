"""Every item of a paged list, fetched a page at a time.

Hand-written, copied into the package by ``bookstore sdk`` (ops/sdk.py). List
operations answer ``{"items": [...], "next_cursor": ...}``; these follow
``next_cursor`` until it is null::

    from bookstore_api_client.api.catalog import list_products
    from bookstore_api_client.pages import iterate

    for product in iterate(list_products, client=client, category=category_id, limit=100):
        print(product.title)

Filters and ``limit`` are passed to every page (a cursor is only valid with the filters
it was made for). A problem answer raises: the client's typed error if the client came
from ``problems.connect``, otherwise :class:`PageError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

from .types import UNSET, Unset


class PageError(Exception):
    """A page request did not answer with a page; ``answer`` is what it returned."""

    def __init__(self, answer: Any) -> None:
        super().__init__(f"expected a page, got {answer!r}")
        self.answer = answer


def _next(page: Any) -> str | None:
    if not hasattr(page, "items") or not hasattr(page, "next_cursor"):
        raise PageError(page)
    cursor = page.next_cursor
    return None if cursor is None or isinstance(cursor, Unset) else cursor


def iterate(operation: ModuleType, *, client: Any, **params: Any) -> Iterator[Any]:
    """Yields every item of a generated list operation (a module with ``sync``)."""
    cursor = params.pop("cursor", UNSET)
    while True:
        page = operation.sync(client=client, cursor=cursor, **params)
        cursor = _next(page)
        yield from page.items
        if cursor is None:
            return


async def aiterate(operation: ModuleType, *, client: Any, **params: Any) -> AsyncIterator[Any]:
    """As :func:`iterate`, with the operation's ``asyncio`` call."""
    cursor = params.pop("cursor", UNSET)
    while True:
        page = await operation.asyncio(client=client, cursor=cursor, **params)
        cursor = _next(page)
        for item in page.items:
            yield item
        if cursor is None:
            return
