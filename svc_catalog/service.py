"""The ``catalog`` nameko service: thin entrypoints over svc_catalog's use cases."""

from __future__ import annotations

from typing import Any

from nameko.timer import timer

from common.context import CallContextProvider
from common.db import check_database, database
from common.errors import BookstoreError
from common.events import OutboxRelay
from common.idempotency import purge_expired, run_once
from common.rpc import rpc
from svc_catalog import categories, products
from svc_catalog.models import Base, CatalogIdempotencyKey, CatalogOutboxMessage


class CatalogService:
    name = "catalog"

    db = database(Base)
    call_context = CallContextProvider()
    outbox_relay = OutboxRelay(Base, CatalogOutboxMessage)

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
        return {"service": self.name, "status": "ok", "outbox_backlog": self.outbox_relay.backlog()}

    @rpc(expected_exceptions=BookstoreError)
    def get_product(self, product_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return products.get_product(session, product_id)

    @rpc(expected_exceptions=BookstoreError)
    def list_products(
        self,
        filters: dict[str, Any] | None = None,
        sort: str = "title",
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return products.list_products(
                session, filters=filters, sort=sort, cursor=cursor, limit=limit
            )

    @rpc(expected_exceptions=BookstoreError)
    def create_product(
        self, product: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return run_once(
                session,
                CatalogIdempotencyKey,
                scope=f"create_product:{self.call_context.user_id}",
                key=idempotency_key,
                request=product,
                operation=lambda: products.create_product(session, product),
            )

    @rpc(expected_exceptions=BookstoreError)
    def update_product(
        self, product_id: str, changes: dict[str, Any], expected_version: int | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return products.update_product(session, product_id, changes, expected_version)

    @rpc(expected_exceptions=BookstoreError)
    def delete_product(self, product_id: str, expected_version: int | None = None) -> None:
        with self.db.get_session() as session:
            products.delete_product(session, product_id, expected_version)

    @rpc(expected_exceptions=BookstoreError)
    def get_category(self, category_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return categories.get_category(session, category_id)

    @rpc(expected_exceptions=BookstoreError)
    def list_categories(
        self, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return categories.list_categories(session, cursor=cursor, limit=limit)

    @rpc(expected_exceptions=BookstoreError)
    def create_category(
        self, category: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return run_once(
                session,
                CatalogIdempotencyKey,
                scope=f"create_category:{self.call_context.user_id}",
                key=idempotency_key,
                request=category,
                operation=lambda: categories.create_category(session, category),
            )

    @timer(interval=3600)
    def forget_idempotency_keys(self) -> None:
        with self.db.get_session() as session:
            purge_expired(session, CatalogIdempotencyKey)
