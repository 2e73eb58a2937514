"""The search index against the catalog: drift found by digest, repaired book by book
(common/reconcile.py, docs/decisions/0063).

A book the index lacks or holds in an older version is fetched from the catalog and
written as its event would have written it; a book the index has and the catalog does
not (withdrawn, its event lost) is withdrawn from the index. Run by the search service's
timer, by ``bookstore reconcile search-index`` and, without repairing, by
``index_status``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.orm import Session

from common import reconcile
from svc_search import indexing
from svc_search.indexing import Category

COPY = "search_index"
_LIVE = "NOT deleted"
#: Books fetched from the catalog per call while repairing.
FETCH_BATCH = 500


class CatalogFeed(Protocol):
    """The catalog's side (over RPC in the service)."""

    def digest(self) -> reconcile.Digest: ...

    def versions(self, bucket: str) -> dict[str, int]: ...

    def products(self, ids: list[str]) -> list[dict[str, Any]]: ...


def index_digest(session: Session) -> reconcile.Digest:
    return reconcile.digest(session, "search_documents", "product_id", "product_version", _LIVE)


def find_drift(session: Session, catalog: CatalogFeed) -> reconcile.Drift:
    return reconcile.compare(
        catalog.digest(),
        index_digest(session),
        catalog.versions,
        lambda bucket: reconcile.versions(
            session, "search_documents", "product_id", "product_version", _LIVE, bucket
        ),
    )


def reconcile_index(
    session: Session,
    catalog: CatalogFeed,
    categories: Callable[[], dict[str, Category]],
    *,
    repair: bool,
) -> dict[str, Any]:
    """Finds the drift and, if ``repair``, repairs it (committing); returns the report."""
    return reconcile.settle(
        COPY,
        find_drift(session, catalog),
        (lambda drift: _repair(session, catalog, categories(), drift)) if repair else None,
    )


def _repair(
    session: Session, catalog: CatalogFeed, categories: dict[str, Category], drift: reconcile.Drift
) -> int:
    repaired = 0
    wanted = drift.missing + drift.stale
    for start in range(0, len(wanted), FETCH_BATCH):
        for item in catalog.products(wanted[start : start + FETCH_BATCH]):
            stock = (item["available"], item.get("stock_version", 0))
            values = indexing.document_values(
                item["product"],
                categories,
                available=stock[0],
                stock_version=stock[1],
                rating=item["rating"],
            )
            indexing.upsert_product(session, values)
            indexing.set_availability(session, {item["product"]["id"]: stock})
            repaired += 1
        session.commit()
    for product_id in drift.extra:
        repaired += withdraw(session, product_id)
    session.commit()
    return repaired


def withdraw(session: Session, product_id: str) -> int:
    """Marks a document deleted (its words leave the lexicon); returns 1 if it was live."""
    row = (
        session.execute(
            text(
                "UPDATE search_documents SET deleted = true, es_dirty = true, indexed_at = now() "
                "WHERE product_id = CAST(:id AS uuid) AND NOT deleted "
                "RETURNING title, authors_text"
            ),
            {"id": product_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        return 0
    indexing.remove_terms(session, indexing.words_of(row))
    return 1
