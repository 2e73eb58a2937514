"""The ``search`` nameko service: thin entrypoints over svc_search's use cases."""

from __future__ import annotations

import logging
import time
from typing import Any

from eventlet import tpool
from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from nameko.timer import timer

from common import deadletters
from common import reconcile as common_reconcile
from common.consumers import handle_once, purge_handled, reliable_event_handler
from common.context import CallContextProvider
from common.db import check_database, database
from common.errors import BookstoreError
from common.metrics import ServiceMetrics
from common.rpc import call_with_timeout, rpc
from svc_search import indexing, purchases, recommend, reconcile
from svc_search.engine import SearchEngine
from svc_search.indexing import Category
from svc_search.models import Base, SearchHandledEvent
from svc_search.query import parse_search, parse_suggest
from svc_search.settings import Settings

log = logging.getLogger(__name__)

#: Categories are few and rarely change; a book naming an unknown one refreshes at once.
CATEGORY_CACHE_SECONDS = 60.0


def _call_timeout() -> float:
    return Settings.current().call_timeout


class Engine(DependencyProvider):
    """The search engine the configuration names, one per service instance (its circuit
    breaker is per process)."""

    def setup(self) -> None:
        self.engine = SearchEngine.from_settings(Settings.current())

    def get_dependency(self, worker_ctx: WorkerContext) -> SearchEngine:
        return self.engine


class CategoryCache(DependencyProvider):
    """The catalog's categories (id -> name, parent), fetched over RPC and kept a minute."""

    def setup(self) -> None:
        self.categories: dict[str, Category] = {}
        self.fetched_at = 0.0

    def get_dependency(self, worker_ctx: WorkerContext) -> CategoryCache:
        return self

    def resolve(self, catalog: Any, category_id: str | None) -> dict[str, Category]:
        stale = time.monotonic() - self.fetched_at > CATEGORY_CACHE_SECONDS
        if stale or (category_id and category_id not in self.categories):
            self.categories = fetch_categories(catalog)
            self.fetched_at = time.monotonic()
        return self.categories


def fetch_categories(catalog: Any) -> dict[str, Category]:
    """Every category, following the catalog's pages."""
    categories: dict[str, Category] = {}
    cursor = None
    while True:
        page = call_with_timeout(
            catalog.list_categories, cursor=cursor, limit=100, timeout=_call_timeout()
        )
        for item in page["items"]:
            categories[item["id"]] = Category(item["id"], item["name"], item["parent_id"])
        cursor = page["next_cursor"]
        if cursor is None:
            return categories


class RpcCatalogFeed:
    """The catalog's digest, versions and books over RPC (svc_search/reconcile.py)."""

    def __init__(self, catalog: Any) -> None:
        self._catalog = catalog

    def digest(self) -> dict[str, Any]:
        return call_with_timeout(self._catalog.search_feed_digest, timeout=_call_timeout() * 6)

    def versions(self, bucket: str) -> dict[str, int]:
        versions = self._catalog.search_feed_versions
        return call_with_timeout(versions, bucket, timeout=_call_timeout())

    def products(self, ids: list[str]) -> list[dict[str, Any]]:
        answer = call_with_timeout(
            self._catalog.export_for_search_by_ids, ids, timeout=_call_timeout() * 6
        )
        return answer["items"]


class RpcOrderFeed:
    """The order service's purchases by id range, over RPC (svc_search/purchases.py)."""

    def __init__(self, order: Any) -> None:
        self._order = order

    def digest(self) -> dict[str, Any]:
        return call_with_timeout(self._order.purchase_digest, timeout=_call_timeout() * 6)

    def versions(self, bucket: str) -> dict[str, str]:
        return call_with_timeout(self._order.purchase_fingerprints, bucket, timeout=_call_timeout())

    def purchases(self, order_ids: list[str]) -> list[dict[str, Any]]:
        return call_with_timeout(
            self._order.export_purchases, order_ids, timeout=_call_timeout() * 6
        )


#: pg advisory lock held by the instance reconciling the index and the purchases.
LOCK_KEY = 0x5EA5C4_0063


class SearchService(deadletters.DeadLetterAdmin):
    name = "search"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    engine = Engine()
    category_cache = CategoryCache()
    catalog = RpcProxy("catalog")
    order = RpcProxy("order")
    #: When this instance last reconciled (a dict: nameko makes a new instance per worker).
    _last_reconciled: dict[str, float] = {}

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
        return {"service": self.name, **self.engine.health()}

    # -- search --------------------------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def search(
        self,
        q: str | None = None,
        filters: dict[str, Any] | None = None,
        sort: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        query = parse_search(q, filters, sort, cursor, limit)
        with self.db.get_session() as session:
            return self.engine.search(session, query)

    @rpc(expected_exceptions=BookstoreError)
    def suggest(self, q: str | None = None, limit: int | None = None) -> dict[str, Any]:
        prefix, limit = parse_suggest(q, limit)
        with self.db.get_session() as session:
            return self.engine.suggest(session, prefix, limit)

    @rpc
    def index_status(self) -> dict[str, Any]:
        """The index as it is, and compared with the catalog: ``status`` is ``drift``
        (with ``catalog`` saying how much) when books are missing, extra or stale."""
        with self.db.get_session() as session:
            status = indexing.index_status(session)
            try:
                compared = reconcile.find_drift(session, RpcCatalogFeed(self.catalog)).report()
            except Exception as error:  # noqa: BLE001 - the status must answer regardless
                compared = {"in_sync": None, "error": f"catalog not compared: {error!r}"}
        answer = {**status, "backend": self.engine.backend, **self.engine.health()}
        answer["catalog"] = compared
        if compared["in_sync"] is False and answer["status"] == "ok":
            answer["status"] = "drift"
        return answer

    @rpc(expected_exceptions=BookstoreError)
    def reconcile_index(self, repair: bool = True) -> dict[str, Any]:
        """Compares the index with the catalog and (``repair``) repairs the drift."""
        with self.db.get_session() as session:
            return self._reconcile_index(session, repair=repair)

    @rpc(expected_exceptions=BookstoreError)
    def reconcile_purchases(self, repair: bool = True) -> dict[str, Any]:
        """Compares the recommendation inputs (what customers bought) with the order
        service's paid orders and (``repair``) repairs the drift; a new instance's empty
        inputs are backfilled so."""
        with self.db.get_session() as session:
            return self._reconcile_purchases(session, repair=repair)

    def _reconcile_index(self, session: Any, *, repair: bool) -> dict[str, Any]:
        return reconcile.reconcile_index(
            session,
            RpcCatalogFeed(self.catalog),
            lambda: fetch_categories(self.catalog),
            repair=repair,
        )

    def _reconcile_purchases(self, session: Any, *, repair: bool) -> dict[str, Any]:
        return purchases.reconcile_purchases(session, RpcOrderFeed(self.order), repair=repair)

    # -- recommendations -------------------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def also_bought(self, product_id: str, limit: int | None = None) -> dict[str, Any]:
        with self.db.get_session() as session:
            return recommend.also_bought(session, product_id, limit)

    @rpc(expected_exceptions=BookstoreError)
    def recommendations(self, user_id: str, limit: int | None = None) -> dict[str, Any]:
        with self.db.get_session() as session:
            return recommend.for_user(session, user_id, limit)

    @rpc
    def recommender_status(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            return recommend.status(session)

    @rpc
    def train_recommender(self) -> dict[str, Any]:
        """Trains now (operators, tests); the timer does it every SEARCH_TRAIN_INTERVAL."""
        return self._train(force=True) or {"trained": False}

    def _train(self, force: bool) -> dict[str, Any] | None:
        interval = Settings.current().train_interval
        with self.db.get_session() as session:
            # The fitting is CPU work in numpy/scipy: in a real thread, so this instance's
            # green threads (RPC, events) keep running meanwhile. Database work stays here.
            return recommend.train_if_due(session, interval, force, run=tpool.execute)

    # -- events: the index -------------------------------------------------------------------

    @reliable_event_handler("catalog", "product.created")
    def index_created_product(self, envelope: dict[str, Any]) -> None:
        self._index_product(envelope, "search.index_created_product")

    @reliable_event_handler("catalog", "product.updated")
    def index_updated_product(self, envelope: dict[str, Any]) -> None:
        self._index_product(envelope, "search.index_updated_product")

    @reliable_event_handler("catalog", "product.deleted")
    def index_deleted_product(self, envelope: dict[str, Any]) -> None:
        self._index_product(envelope, "search.index_deleted_product", deleted=True)

    def _index_product(self, envelope: dict[str, Any], handler: str, deleted: bool = False) -> None:
        product = envelope["data"]
        categories = self.category_cache.resolve(self.catalog, product.get("category_id"))
        values = indexing.document_values(product, categories, deleted=deleted)
        with self.db.get_session() as session:
            handle_once(
                session,
                SearchHandledEvent,
                envelope,
                handler,
                lambda: indexing.upsert_product(session, values),
            )
        if not deleted:
            # Availability is read once the row exists: a stock change committed before
            # this read is in it, and a later one's event finds the row to update. (Read
            # before the insert, a change in between found no row and was lost.) A retry
            # of this event skips the upsert above and reads again.
            self._index_stock([{"product_id": product["id"]}])

    @reliable_event_handler("catalog", "inventory.adjusted")
    def index_adjusted_stock(self, envelope: dict[str, Any]) -> None:
        self._index_stock([envelope["data"]])

    @reliable_event_handler("catalog", "inventory.reserved")
    def index_reserved_stock(self, envelope: dict[str, Any]) -> None:
        self._index_stock(envelope["data"]["items"])

    @reliable_event_handler("catalog", "inventory.committed")
    def index_committed_stock(self, envelope: dict[str, Any]) -> None:
        self._index_stock(envelope["data"]["items"])

    @reliable_event_handler("catalog", "inventory.released")
    def index_released_stock(self, envelope: dict[str, Any]) -> None:
        self._index_stock(envelope["data"]["items"])

    @reliable_event_handler("catalog", "inventory.reservation_expired")
    def index_expired_reservation_stock(self, envelope: dict[str, Any]) -> None:
        self._index_stock(envelope["data"]["items"])

    def _index_stock(self, items: list[dict[str, Any]]) -> None:
        """The availability an inventory event carries (with the stock row's version);
        an event from before the version was carried (docs/decisions/0081) makes this
        ask the catalog instead. Setting a figure twice is harmless and an older one is
        ignored, so these handlers keep no handled ids."""
        if all("stock_version" in item and "available" in item for item in items):
            available = {
                str(item["product_id"]): (item["available"], item["stock_version"])
                for item in items
            }
        else:
            available = self._current_availability([str(item["product_id"]) for item in items])
        with self.db.get_session() as session:
            indexing.set_availability(session, available)

    def _current_availability(self, product_ids: list[str]) -> dict[str, tuple[int, int]]:
        if not product_ids:
            return {}
        answer = call_with_timeout(self.catalog.availability, product_ids, timeout=_call_timeout())
        return {
            product_id: (product["available"], product.get("stock_version", 0))
            for product_id, product in answer["products"].items()
            if product["purchasable"]
        }

    @reliable_event_handler("catalog", "review.created")
    def index_rating(self, envelope: dict[str, Any]) -> None:
        data = envelope["data"]
        with self.db.get_session() as session:
            indexing.set_rating(
                session,
                data["product_id"],
                data["product_rating"]["average"],
                data["product_rating"]["count"],
            )

    # -- events: what customers bought -------------------------------------------------------

    @reliable_event_handler("order", "order.paid")
    def record_purchase(self, envelope: dict[str, Any]) -> None:
        with self.db.get_session() as session:
            handle_once(
                session,
                SearchHandledEvent,
                envelope,
                "search.record_purchase",
                lambda: recommend.record_order(session, envelope["data"], envelope["time"]),
            )

    @reliable_event_handler("order", "order.refunded")
    def forget_refunded_purchase(self, envelope: dict[str, Any]) -> None:
        """A refunded order was not a purchase after all (returned, or never shipped)."""
        with self.db.get_session() as session:
            recommend.forget_order(session, envelope["data"]["id"])

    # -- timers ------------------------------------------------------------------------------

    @timer(interval=10)
    def train_when_due(self) -> None:
        trained = self._train(force=False)
        if trained:
            log.info("recommender trained", extra={"model": trained})

    @timer(interval=1)
    def push_to_elasticsearch(self) -> None:
        with self.db.get_session() as session:
            self.engine.push_dirty(session)

    @timer(interval=3600)
    def forget_handled_events(self) -> None:
        with self.db.get_session() as session:
            purge_handled(session, SearchHandledEvent)

    @timer(interval=30)
    def reconcile_when_due(self) -> None:
        """Every SEARCH_RECONCILE_INTERVAL seconds (0: never), one instance (an advisory
        lock) repairs what events missed: the index, then the recommendation inputs."""
        interval = Settings.current().reconcile_interval
        if not common_reconcile.due(self._last_reconciled, interval, time.monotonic()):
            return
        with self.db.get_session() as session:
            reports = common_reconcile.alone(
                session,
                LOCK_KEY,
                lambda: [
                    self._reconcile_index(session, repair=True),
                    self._reconcile_purchases(session, repair=True),
                ],
            )
        for report in reports or ():
            if not report["in_sync"]:
                log.warning("%s drift repaired", report["copy"], extra={"reconcile": report})
