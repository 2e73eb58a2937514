"""The ``catalog`` nameko service: thin entrypoints over svc_catalog's use cases."""

from __future__ import annotations

from typing import Any

from nameko.rpc import RpcProxy
from nameko.timer import timer

from common.context import CallContextProvider
from common.db import check_database, database, utcnow
from common.errors import BookstoreError
from common.events import OutboxRelay
from common.idempotency import purge_expired, run_once
from common.metrics import ServiceMetrics
from common.rpc import call_with_timeout, rpc
from svc_catalog import categories, image_objects, images, inventory, products, reviews, search_feed
from svc_catalog.image_store import ImageStorage
from svc_catalog.models import Base, CatalogIdempotencyKey, CatalogOutboxMessage
from svc_catalog.settings import Settings


class CatalogService:
    name = "catalog"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    outbox_relay = OutboxRelay(Base, CatalogOutboxMessage)
    orders = RpcProxy("order")
    image_store = ImageStorage()

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
        return {"service": self.name, **self.outbox_relay.health()}

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

    # -- product images (administrators; the bytes go straight to S3) ---------------------

    @rpc(expected_exceptions=BookstoreError)
    def request_image_upload(self, product_id: str, content_type: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return images.request_upload(session, self.image_store, product_id, content_type)

    @rpc(expected_exceptions=BookstoreError)
    def confirm_image_upload(self, product_id: str, key: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return images.confirm_upload(session, self.image_store, product_id, key)

    @rpc(expected_exceptions=BookstoreError)
    def reorder_product_images(self, product_id: str, image_ids: list[str]) -> dict[str, Any]:
        with self.db.get_session() as session:
            return images.reorder_images(session, product_id, image_ids)

    @rpc(expected_exceptions=BookstoreError)
    def delete_product_image(self, product_id: str, image_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return images.delete_image(session, self.image_store, product_id, image_id)

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

    # -- inventory (the order saga and administrators) ---------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def get_stock(self, product_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.get_stock(session, product_id)

    @rpc(expected_exceptions=BookstoreError)
    def set_stock(
        self, product_id: str, on_hand: int, low_stock_threshold: int | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.set_stock(session, product_id, on_hand, low_stock_threshold)

    @rpc(expected_exceptions=BookstoreError)
    def availability(self, product_ids: list[str]) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.availability(session, product_ids)

    @rpc(expected_exceptions=BookstoreError)
    def reserve(
        self, order_id: str, items: list[dict[str, Any]], ttl_seconds: int
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.reserve(session, order_id, items, ttl_seconds)

    @rpc(expected_exceptions=BookstoreError)
    def commit_reservation(self, order_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.commit(session, order_id)

    @rpc(expected_exceptions=BookstoreError)
    def release_reservation(self, order_id: str, reason: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.release(session, order_id, reason)

    @rpc(expected_exceptions=BookstoreError)
    def extend_reservation(self, order_id: str, ttl_seconds: int) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.extend(session, order_id, ttl_seconds)

    @rpc(expected_exceptions=BookstoreError)
    def get_reservation(self, order_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return inventory.get_reservation(session, order_id)

    # -- reviews (customers) and the search index's feed -------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def create_review(
        self,
        product_id: str,
        user_id: str,
        review: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return run_once(
                session,
                CatalogIdempotencyKey,
                scope=f"create_review:{user_id}",
                key=idempotency_key,
                request={"product_id": product_id, **review},
                operation=lambda: reviews.create_review(
                    session, product_id, user_id, review, self._has_bought
                ),
            )

    @rpc(expected_exceptions=BookstoreError)
    def list_reviews(
        self, product_id: str, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return reviews.list_reviews(session, product_id, cursor=cursor, limit=limit)

    @rpc(expected_exceptions=BookstoreError)
    def export_for_search(self, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        with self.db.get_session() as session:
            return search_feed.export_for_search(session, after, limit)

    @rpc(expected_exceptions=BookstoreError)
    def search_feed_digest(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            return search_feed.product_digest(session)

    @rpc(expected_exceptions=BookstoreError)
    def search_feed_versions(self, bucket: str) -> dict[str, int]:
        with self.db.get_session() as session:
            return search_feed.product_versions(session, bucket)

    @rpc(expected_exceptions=BookstoreError)
    def export_for_search_by_ids(self, ids: list[str]) -> dict[str, Any]:
        with self.db.get_session() as session:
            return search_feed.export_products(session, ids)

    def _has_bought(self, user_id: str, product_id: str) -> bool:
        """Whether one of the customer's PAID, SHIPPED or DELIVERED orders has the book:
        one question to the order service, which owns orders (it used to page through
        the customer's orders from here)."""
        return call_with_timeout(
            self.orders.has_bought,
            user_id,
            product_id,
            timeout=Settings.current().call_timeout,
        )

    @timer(interval=5)
    def expire_reservations(self) -> None:
        """Gives back the stock of abandoned checkouts, one reservation per transaction."""
        now = utcnow()
        with self.db.get_session() as session:
            due = inventory.due_for_expiry(session, now)
        for order_id in due:
            with self.db.get_session() as session:
                inventory.expire(session, order_id, now)

    @timer(interval=5)
    def delete_unused_image_objects(self) -> None:
        """Objects of deleted images and products, and of uploads never confirmed, go
        once their transaction committed (svc_catalog/image_objects.py)."""
        with self.db.get_session() as session:
            image_objects.expired_uploads(session, utcnow())
        with self.db.get_session() as session:
            image_objects.delete_unused_objects(session, self.image_store, utcnow())

    @timer(interval=3600)
    def forget_idempotency_keys(self) -> None:
        with self.db.get_session() as session:
            purge_expired(session, CatalogIdempotencyKey)
