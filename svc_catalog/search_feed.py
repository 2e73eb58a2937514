"""What the search service needs to rebuild its index: every live book with its
availability and rating totals, a page at a time in id order.

A plain keyset walk over the primary key (``id > after``), so each page costs the same
however deep the walk is, and books added meanwhile are either in a later page or arrive
as events. Search owns its index; this only reads (docs/decisions/0050). For
reconciliation (docs/decisions/0063) it also gives the books' digest by id range, the
versions in one range, and chosen books.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common import reconcile
from common.db import parse_id
from common.errors import InvalidParameter
from svc_catalog.models import Product, ProductRating, StockLevel
from svc_catalog.products import product_to_dict
from svc_catalog.reviews import rating_to_dict

MAX_PAGE = 2000


def _feed_item(
    product: Product, level: StockLevel | None, totals: ProductRating | None
) -> dict[str, Any]:
    return {
        "product": product_to_dict(product),
        "available": (level.on_hand - level.reserved) if level else 0,
        "stock_version": level.version if level else 0,
        "rating": rating_to_dict(totals),
    }


def export_for_search(
    session: Session, after: str | None = None, limit: int = 1000
) -> dict[str, Any]:
    """Up to ``limit`` live books after id ``after``; ``total`` (live books now) is given
    with the first page, for a progress bar."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise InvalidParameter(f"limit: must be from 1 to {MAX_PAGE}.", {"parameter": "limit"})
    query = (
        select(Product, StockLevel, ProductRating)
        .outerjoin(StockLevel, StockLevel.product_id == Product.id)
        .outerjoin(ProductRating, ProductRating.product_id == Product.id)
        .where(Product.deleted_at.is_(None))
    )
    if after is not None:
        query = query.where(Product.id > parse_id(after, "after"))
    rows = session.execute(query.order_by(Product.id).limit(limit)).all()
    items = [_feed_item(*row) for row in rows]
    result: dict[str, Any] = {
        "items": items,
        "next_after": items[-1]["product"]["id"] if len(items) == limit else None,
    }
    if after is None:
        result["total"] = session.scalar(
            select(func.count()).select_from(Product).where(Product.deleted_at.is_(None))
        )
    return result


# -- reconciliation (svc_search/reconcile.py, docs/decisions/0063) ---------------------------

_LIVE = "deleted_at IS NULL"


def product_digest(session: Session) -> reconcile.Digest:
    """Counts and checksums of live books' ``id:version`` by id range."""
    return reconcile.digest(session, "products", "id", "version", _LIVE)


def product_versions(session: Session, bucket: str) -> dict[str, int]:
    try:
        return reconcile.versions(session, "products", "id", "version", _LIVE, bucket)
    except ValueError as error:
        raise InvalidParameter(str(error), {"parameter": "bucket"}) from None


def export_products(session: Session, ids: list[str]) -> dict[str, Any]:
    """The live books among ``ids``, as :func:`export_for_search` gives them."""
    if not isinstance(ids, list) or len(ids) > MAX_PAGE:
        raise InvalidParameter(f"ids: at most {MAX_PAGE}.", {"parameter": "ids"})
    wanted = [parse_id(product_id, "ids") for product_id in ids]
    rows = session.execute(
        select(Product, StockLevel, ProductRating)
        .outerjoin(StockLevel, StockLevel.product_id == Product.id)
        .outerjoin(ProductRating, ProductRating.product_id == Product.id)
        .where(Product.deleted_at.is_(None), Product.id.in_(wanted))
        .order_by(Product.id)
    ).all()
    return {"items": [_feed_item(*row) for row in rows]}
