"""Idempotency keys against the real PostgreSQL, with real concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.errors import IdempotencyKeyReused, InvalidInput
from common.idempotency import run_once
from svc_catalog import categories
from svc_catalog.models import CatalogIdempotencyKey, Category


def create_once(session: Session, key: str, payload: dict) -> dict:
    result = run_once(
        session,
        CatalogIdempotencyKey,
        scope="test",
        key=key,
        request=payload,
        operation=lambda: categories.create_category(session, payload),
    )
    session.commit()
    return result


def count_categories(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Category))


def test_concurrent_requests_with_one_key_do_the_work_once(platform, catalog_db):
    payload = {"slug": "concurrent", "name": "Concurrent"}
    start = threading.Barrier(8)

    def request(_: int) -> dict:
        with Session(platform.engine("catalog")) as session:
            start.wait()
            return create_once(session, "same-key", payload)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(request, range(8)))
    assert all(result == results[0] for result in results)
    assert count_categories(catalog_db) == 1


def test_same_key_different_request_is_refused(catalog_db):
    create_once(catalog_db, "k", {"slug": "first", "name": "First"})
    with pytest.raises(IdempotencyKeyReused):
        create_once(catalog_db, "k", {"slug": "second", "name": "Second"})


def test_keys_are_scoped(catalog_db):
    payload = {"slug": "scoped", "name": "Scoped"}
    create_once(catalog_db, "k", payload)
    other_scope = run_once(
        catalog_db,
        CatalogIdempotencyKey,
        scope="another caller",
        key="k",
        request=payload,
        operation=lambda: "did the work",
    )
    assert other_scope == "did the work"


def test_failed_work_releases_the_key(catalog_db):
    with pytest.raises(InvalidInput):
        create_once(catalog_db, "k", {"slug": "bad", "name": "  "})
    catalog_db.rollback()
    assert create_once(catalog_db, "k", {"slug": "good", "name": "Good"})["slug"] == "good"


def test_no_key_means_no_bookkeeping(catalog_db):
    run_once(
        catalog_db, CatalogIdempotencyKey, scope="s", key=None, request={}, operation=lambda: None
    )
    assert catalog_db.scalar(select(func.count()).select_from(CatalogIdempotencyKey)) == 0
