"""The ``order`` nameko service: carts, orders and the checkout saga, thin entrypoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nameko.rpc import RpcProxy
from nameko.timer import timer

from common import deadletters, schemas
from common.consumers import handle_once, purge_handled, reliable_event_handler
from common.context import CallContextProvider
from common.db import check_database, database, parse_id, utcnow
from common.errors import BookstoreError, DependencyUnavailable, NotFound
from common.events import OutboxRelay
from common.metrics import ServiceMetrics
from common.rpc import call_with_timeout, rpc
from svc_order import carts, domain, orders, purchase_feed
from svc_order.checkout import Checkout
from svc_order.models import Base, OrderHandledEvent, OrderOutboxMessage
from svc_order.settings import Settings

log = logging.getLogger(__name__)


def _call_timeout() -> float:
    return Settings.current().call_timeout


class RpcRemote:
    """The saga's view of the other services, over RPC with timeouts."""

    def __init__(self, auth: Any, catalog: Any, payment: Any) -> None:
        self._auth, self._catalog, self._payment = auth, catalog, payment

    def _call(self, method: Any, *args: Any) -> Any:
        return call_with_timeout(method, *args, timeout=_call_timeout())

    def availability(self, product_ids: list[str]) -> dict[str, Any]:
        return self._call(self._catalog.availability, product_ids)

    def shipping_details(self, user_id: str, address_id: str) -> dict[str, Any]:
        return self._call(self._auth.get_shipping_details, user_id, address_id)

    def reserve(
        self, order_id: str, items: list[dict[str, Any]], ttl_seconds: int
    ) -> dict[str, Any]:
        return self._call(self._catalog.reserve, order_id, items, ttl_seconds)

    def commit_reservation(self, order_id: str) -> dict[str, Any]:
        return self._call(self._catalog.commit_reservation, order_id)

    def release_reservation(self, order_id: str, reason: str) -> dict[str, Any]:
        return self._call(self._catalog.release_reservation, order_id, reason)

    def authorize(
        self, order_id: str, amount: int, currency: str, payment_method: str, not_after: str
    ) -> dict[str, Any]:
        return self._call(
            self._payment.authorize, order_id, amount, currency, payment_method, not_after
        )

    def get_payment(self, order_id: str) -> dict[str, Any]:
        return self._call(self._payment.get_payment, order_id)

    def refund(self, order_id: str, reason: str, amount: int | None = None) -> dict[str, Any]:
        return self._call(self._payment.refund, order_id, reason, amount)

    def extend_reservation(self, order_id: str, ttl_seconds: int) -> dict[str, Any]:
        return self._call(self._catalog.extend_reservation, order_id, ttl_seconds)

    def cancel_unfinished_payment(self, order_id: str) -> dict[str, Any]:
        return self._call(self._payment.cancel_unfinished, order_id)

    def payment_record(self, order_id: str) -> dict[str, Any]:
        """The payment, its attempts and refunds (for the order's payments view)."""
        try:
            payment = self._call(self._payment.get_payment, order_id)
        except NotFound:
            return {"payment": None, "attempts": [], "refunds": []}
        return {
            "payment": payment,
            "attempts": self._call(self._payment.list_attempts, order_id),
            "refunds": self._call(self._payment.list_refunds, order_id),
        }


class OrderService(deadletters.DeadLetterAdmin):
    name = "order"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    outbox_relay = OutboxRelay(Base, OrderOutboxMessage)
    auth = RpcProxy("auth")
    catalog = RpcProxy("catalog")
    payment = RpcProxy("payment")

    def _checkout(self) -> Checkout:
        return Checkout(self.db.get_session, RpcRemote(self.auth, self.catalog, self.payment))

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
        return {"service": self.name, **self.outbox_relay.health()}

    # -- cart ----------------------------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def get_cart(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            rows = carts.lines(session, user_id)
            product_ids = [str(row.product_id) for row in rows]
            products = RpcRemote(self.auth, self.catalog, self.payment).availability(product_ids)
            return carts.view(rows, products["products"])

    @rpc(expected_exceptions=BookstoreError)
    def set_cart_item(self, user_id: str, product_id: str, quantity: int) -> dict[str, Any]:
        # One availability read serves both the check and the cart's view: the cart's
        # other books are asked for with the new one (no transaction is open meanwhile).
        with self.db.get_session() as session:
            product_ids = {str(row.product_id) for row in carts.lines(session, user_id)}
        wanted = str(parse_id(product_id, "product_id"))
        remote = RpcRemote(self.auth, self.catalog, self.payment)
        products = remote.availability(sorted(product_ids | {wanted}))["products"]
        with self.db.get_session() as session:
            carts.set_quantity(session, user_id, product_id, quantity, products.get(wanted))
            view = carts.view(carts.lines(session, user_id), products)
        return view

    @rpc(expected_exceptions=BookstoreError)
    def remove_cart_item(self, user_id: str, product_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            carts.remove(session, user_id, product_id)
        return self.get_cart(user_id)

    @rpc(expected_exceptions=BookstoreError)
    def clear_cart(self, user_id: str) -> None:
        with self.db.get_session() as session:
            carts.clear(session, user_id)

    # -- orders --------------------------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def place_order(
        self, user_id: str, request: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        schemas.validate("OrderCreate", request)
        return self._checkout().place_order(user_id, request, idempotency_key)

    @rpc(expected_exceptions=BookstoreError)
    def get_order(self, order_id: str, user_id: str | None = None) -> dict[str, Any]:
        """``user_id`` set: only if that customer placed it (None: an admin's look-up)."""
        with self.db.get_session() as session:
            if user_id is None:
                return orders.order_to_dict(orders.find(session, order_id))
            return orders.order_to_dict(orders.find_owned(session, order_id, user_id))

    @rpc(expected_exceptions=BookstoreError)
    def list_orders(
        self,
        user_id: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return orders.list_orders(
                session, user_id=user_id, status=status, cursor=cursor, limit=limit
            )

    # -- the purchases search's recommendations are built on (svc_order/purchase_feed.py) --

    @rpc
    def purchase_digest(self) -> dict[str, Any]:
        """Orders that count as purchases (paid, not refunded): count and checksum of
        their fingerprints per id range."""
        with self.db.get_session() as session:
            return purchase_feed.purchase_digest(session)

    @rpc(expected_exceptions=BookstoreError)
    def purchase_fingerprints(self, bucket: str) -> dict[str, str]:
        """``{order_id: fingerprint}`` of the purchases in one id range."""
        with self.db.get_session() as session:
            return purchase_feed.purchase_fingerprints(session, bucket)

    @rpc(expected_exceptions=BookstoreError)
    def export_purchases(self, order_ids: list[str]) -> list[dict[str, Any]]:
        """The purchases among ``order_ids`` (user, paid_at, items); others are absent."""
        with self.db.get_session() as session:
            return purchase_feed.export_purchases(session, order_ids)

    # -- the paid orders analytics counts (svc_analytics/reconcile.py) ------------------------

    @rpc
    def paid_order_digest(self) -> dict[str, Any]:
        """Paid orders (refunded ones too): count and checksum of their fingerprints
        (currency, payment's window, refunded amount) per id range."""
        with self.db.get_session() as session:
            return purchase_feed.paid_order_digest(session)

    @rpc(expected_exceptions=BookstoreError)
    def paid_order_fingerprints(self, bucket: str) -> dict[str, str]:
        """``{order_id: fingerprint}`` of the paid orders in one id range."""
        with self.db.get_session() as session:
            return purchase_feed.paid_order_fingerprints(session, bucket)

    @rpc(expected_exceptions=BookstoreError)
    def export_orders(self, order_ids: list[str]) -> list[dict[str, Any]]:
        """The orders among ``order_ids`` as ``list_orders`` shows them; others are absent."""
        with self.db.get_session() as session:
            return purchase_feed.export_orders(session, order_ids)

    @rpc(expected_exceptions=BookstoreError)
    def has_bought(self, user_id: str, product_id: str) -> bool:
        """Whether the customer has a PAID, SHIPPED or DELIVERED order with the book (the
        catalog lets only buyers review)."""
        with self.db.get_session() as session:
            return orders.has_bought(session, user_id, product_id)

    @rpc(expected_exceptions=BookstoreError)
    def cancel_order(
        self, order_id: str, actor_id: str, owner_id: str | None = None
    ) -> dict[str, Any]:
        return self._checkout().cancel(order_id, actor_id, owner_id=owner_id)

    @rpc(expected_exceptions=BookstoreError)
    def ship_order(self, order_id: str, actor_id: str) -> dict[str, Any]:
        return self._change(order_id, lambda order: order.ship(actor_id))

    @rpc(expected_exceptions=BookstoreError)
    def deliver_order(self, order_id: str, actor_id: str) -> dict[str, Any]:
        return self._change(order_id, lambda order: order.deliver(actor_id))

    @rpc(expected_exceptions=BookstoreError)
    def refund_order(
        self, order_id: str, actor_id: str, reason: str, amount: int | None = None
    ) -> dict[str, Any]:
        return self._checkout().refund(order_id, actor_id, reason, amount)

    @rpc(expected_exceptions=BookstoreError)
    def get_order_payments(self, order_id: str, user_id: str | None = None) -> dict[str, Any]:
        """The order's payment record (``user_id`` set: only if that customer placed it)."""
        self.get_order(order_id, user_id)  # raises NotFound for someone else's order
        record = RpcRemote(self.auth, self.catalog, self.payment).payment_record(order_id)
        if record["payment"] is not None:
            record["payment"].pop("client_secret", None)
        return {"order_id": order_id, **record}

    def _change(self, order_id: str, command: Callable[[domain.Order], None]) -> dict[str, Any]:
        """Loads the order (locked), lets it decide, saves what it decided."""
        with self.db.get_session() as session:
            row = orders.find(session, order_id, for_update=True)
            order = orders.to_domain(row)
            command(order)
            orders.save(session, row, order)
            return orders.order_to_dict(row)

    # -- events --------------------------------------------------------------------------

    @reliable_event_handler("auth", "user.deleted")
    def forget_deleted_users_cart(self, envelope: dict[str, Any]) -> None:
        """A deleted account's cart goes with it (its orders stay, anonymous, and no longer
        say how to reach their owner)."""
        user_id = str(envelope["data"]["user_id"])

        def forget() -> None:
            carts.clear(session, user_id)
            orders.forget_contact(session, user_id)

        with self.db.get_session() as session:
            handle_once(
                session, OrderHandledEvent, envelope, "order.forget_deleted_users_cart", forget
            )

    @reliable_event_handler("catalog", "inventory.reservation_expired")
    def settle_checkout_whose_stock_expired(self, envelope: dict[str, Any]) -> None:
        """The stock of an unfinished checkout went back: settle the order now rather than
        at the timer's next round. Settling twice is harmless, so no handled-id is kept."""
        try:
            self._checkout().settle(str(envelope["data"]["order_id"]))
        except DependencyUnavailable as error:
            # The timer settles it later anyway: not worth parking the event for.
            log.info("settling on expiry postponed: %s", error)

    @reliable_event_handler("payment", "payment.succeeded")
    def finish_order_paid_later(self, envelope: dict[str, Any]) -> None:
        """3-D Secure completed (or any success the saga did not see itself)."""
        data = envelope["data"]
        self._settle_from_event(lambda checkout: checkout.payment_settled(data["order_id"], data))

    @reliable_event_handler("payment", "payment.failed")
    def cancel_order_payment_failed_later(self, envelope: dict[str, Any]) -> None:
        data = envelope["data"]
        self._settle_from_event(lambda checkout: checkout.payment_settled(data["order_id"], data))

    @reliable_event_handler("payment", "payment.refunded")
    def note_refund(self, envelope: dict[str, Any]) -> None:
        data = envelope["data"]
        self._settle_from_event(lambda checkout: checkout.payment_refunded(data["order_id"], data))

    def _settle_from_event(self, action: Any) -> None:
        try:
            action(self._checkout())
        except NotFound:
            log.warning("a payment event names an order this service does not have")
        # DependencyUnavailable is transient for every reliable handler (common.consumers):
        # retried in process, then parked for replay.

    # -- timers --------------------------------------------------------------------------

    @timer(interval=10)
    def settle_stale_checkouts(self) -> None:
        self._checkout().converge()

    @timer(interval=3600)
    def forget_expired_carts(self) -> None:
        with self.db.get_session() as session:
            removed = carts.purge_expired(session, utcnow())
            purge_handled(session, OrderHandledEvent)
        if removed:
            log.info("expired carts removed", extra={"lines": removed})
