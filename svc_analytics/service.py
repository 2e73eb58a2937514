"""The ``analytics`` nameko service: event-time windows of orders, payments and refunds
(svc_analytics/domain.py), the reports admins read, and anomalies. Thin entrypoints."""

from __future__ import annotations

import logging
import time
from typing import Any

from nameko.rpc import RpcProxy
from nameko.timer import timer

from common import deadletters
from common import reconcile as common_reconcile
from common.consumers import purge_handled, reliable_event_handler
from common.context import CallContextProvider
from common.db import check_database, database, utcnow
from common.errors import BookstoreError
from common.events import OutboxRelay
from common.metrics import ServiceMetrics
from common.rpc import call_with_timeout, rpc
from svc_analytics import chart, domain, ingest, reconcile, reports
from svc_analytics.models import AnalyticsHandledEvent, AnalyticsOutboxMessage, Base
from svc_analytics.settings import Settings

log = logging.getLogger(__name__)

#: pg advisory lock held by the instance reconciling the windows.
LOCK_KEY = 0xA7A1_0143


class RpcOrderFeed:
    """The order service's paid orders by id range, over RPC (svc_analytics/reconcile.py)."""

    def __init__(self, order: Any) -> None:
        self._order = order

    def digest(self) -> dict[str, Any]:
        return call_with_timeout(
            self._order.paid_order_digest, timeout=Settings.current().call_timeout
        )

    def versions(self, bucket: str) -> dict[str, str]:
        return call_with_timeout(
            self._order.paid_order_fingerprints, bucket, timeout=Settings.current().call_timeout
        )

    def orders(self, order_ids: list[str]) -> list[dict[str, Any]]:
        return call_with_timeout(
            self._order.export_orders, order_ids, timeout=Settings.current().call_timeout
        )


class AnalyticsService(deadletters.DeadLetterAdmin):
    name = "analytics"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    outbox_relay = OutboxRelay(Base, AnalyticsOutboxMessage)
    order = RpcProxy("order")
    #: When this instance last reconciled (a dict: nameko makes a new instance per worker).
    _last_reconciled: dict[str, float] = {}

    def _settings(self) -> domain.Settings:
        return Settings.current().windows()

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
            return {"service": self.name, **self.outbox_relay.health(), **reports.status(session)}

    # -- events ----------------------------------------------------------------------------

    @reliable_event_handler("order", "order.created")
    def record_checkout(self, envelope: dict[str, Any]) -> None:
        self._ingest(envelope, "analytics.record_checkout")

    @reliable_event_handler("order", "order.paid")
    def record_paid_order(self, envelope: dict[str, Any]) -> None:
        self._ingest(envelope, "analytics.record_paid_order")

    @reliable_event_handler("payment", "payment.refunded")
    def record_refund(self, envelope: dict[str, Any]) -> None:
        self._ingest(envelope, "analytics.record_refund")

    def _ingest(self, envelope: dict[str, Any], handler: str) -> None:
        with self.db.get_session() as session:
            ingest.ingest(session, [envelope], self._settings(), handler)
            session.commit()

    # -- reports (admins, through the gateway) ----------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def sales(
        self, start: str, end: str, granularity: str | None = None, currency: str | None = None
    ) -> dict[str, Any]:
        span = domain.parse_range(start, end, granularity, currency)
        with self.db.get_session() as session:
            return reports.sales(session, span)

    @rpc(expected_exceptions=BookstoreError)
    def top_products(
        self, start: str, end: str, currency: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        span = domain.parse_range(start, end, "5m", currency, series=False)
        with self.db.get_session() as session:
            return reports.top_products(session, span, limit)

    @rpc(expected_exceptions=BookstoreError)
    def regions(self, start: str, end: str, currency: str | None = None) -> dict[str, Any]:
        span = domain.parse_range(start, end, "5m", currency, series=False)
        with self.db.get_session() as session:
            return reports.regions(session, span)

    @rpc(expected_exceptions=BookstoreError)
    def peak_hours(self, start: str, end: str, currency: str | None = None) -> dict[str, Any]:
        span = domain.parse_range(start, end, "1h", currency, series=False)
        with self.db.get_session() as session:
            return reports.peak_hours(session, span)

    @rpc(expected_exceptions=BookstoreError)
    def anomalies(self, start: str, end: str, currency: str | None = None) -> dict[str, Any]:
        span = domain.parse_range(start, end, "5m", currency, series=False)
        with self.db.get_session() as session:
            return reports.anomalies(session, span)

    @rpc(expected_exceptions=BookstoreError)
    def sales_chart(
        self, start: str, end: str, granularity: str | None = None, currency: str | None = None
    ) -> dict[str, Any]:
        """The sales of the range as an SVG document (``{"svg": ...}``), anomalies marked."""
        span = domain.parse_range(start, end, granularity, currency)
        with self.db.get_session() as session:
            sales = reports.sales(session, span)
            found = reports.anomalies(session, span)["items"]
        return {"svg": chart.render(sales, found)}

    @rpc
    def close_due_windows(self) -> dict[str, Any]:
        """Closes the windows the watermark has passed now (the timer does it every few
        seconds; operators and tests need not wait)."""
        with self.db.get_session() as session:
            closed = ingest.close_windows(session, self._settings(), utcnow())
            session.commit()
            return {"closed": len(closed), **reports.status(session)}

    @rpc(expected_exceptions=BookstoreError)
    def reconcile_windows(self, repair: bool = True) -> dict[str, Any]:
        """Compares what analytics counted of each order with the order service's paid
        orders and (``repair``) counts what it missed, as the live events would have."""
        with self.db.get_session() as session:
            return self._reconcile_windows(session, repair=repair)

    def _reconcile_windows(self, session: Any, *, repair: bool) -> dict[str, Any]:
        return reconcile.reconcile_windows(
            session, RpcOrderFeed(self.order), self._settings(), repair=repair
        )

    # -- timers ------------------------------------------------------------------------------

    @timer(interval=2)
    def close_windows(self) -> None:
        with self.db.get_session() as session:
            closed = ingest.close_windows(session, self._settings(), utcnow())
            session.commit()
        if closed:
            log.info("analytics windows closed", extra={"windows": len(closed)})

    @timer(interval=3600)
    def forget_handled_events(self) -> None:
        with self.db.get_session() as session:
            purge_handled(session, AnalyticsHandledEvent)

    @timer(interval=30)
    def reconcile_when_due(self) -> None:
        """Every ANALYTICS_RECONCILE_INTERVAL seconds (0: never), one instance (an advisory
        lock) counts what lost events missed."""
        interval = Settings.current().reconcile_interval
        if not common_reconcile.due(self._last_reconciled, interval, time.monotonic()):
            return
        with self.db.get_session() as session:
            report = common_reconcile.alone(
                session, LOCK_KEY, lambda: self._reconcile_windows(session, repair=True)
            )
        if report and not report["in_sync"]:
            log.warning("%s drift repaired", report["copy"], extra={"reconcile": report})
