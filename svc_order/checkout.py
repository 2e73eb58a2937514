"""The checkout saga: reserve stock, authorize payment, then mark the order paid, or
compensate. Orchestrated here, step by step, each step idempotent on the order id.

    place order (PENDING_PAYMENT) ─► catalog.reserve ─► payment.authorize ─► catalog.commit ─► PAID
                                          │ short            │ declined          │ reservation lost
                                          ▼                  ▼                   ▼
                                      CANCELLED   release + CANCELLED   refund + CANCELLED

No database transaction is held across a call to another service. Replaying the request
(same ``Idempotency-Key``) resumes an unfinished order or answers its recorded outcome.
If this service dies or a call times out midway, the order stays PENDING_PAYMENT and
:meth:`Checkout.converge` (a timer) settles it once its checkout window has passed:
payments refuses to authorize after that window, so what it reports then is final.
Cancelling a paid order releases (restocks) its stock and refunds its payment; those
compensations are retried by the same timer until they succeed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, NoReturn, Protocol

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.config import env_int
from common.db import isoformat, utcnow
from common.errors import (
    BookstoreError,
    Conflict,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PaymentDeclined,
)
from common.idempotency import request_fingerprint
from svc_order import carts, orders
from svc_order.models import Order, OrderItem, OrderStatusChange, outbox

log = logging.getLogger(__name__)

SessionFactory = Callable[[], AbstractContextManager[Session]]
#: Recorded checkout failures are answered again, identically, on a replay.
_REPLAYABLE_ERRORS: dict[str, type[BookstoreError]] = {
    "Conflict": Conflict,
    "InvalidInput": InvalidInput,
    "PaymentDeclined": PaymentDeclined,
}
_ADDRESS_FIELDS = (
    "recipient",
    "line1",
    "line2",
    "city",
    "region",
    "postal_code",
    "country",
    "phone",
)
#: Orders are settled by the timer this long after their window (clocks differ a little).
SETTLE_MARGIN = timedelta(seconds=5)


class Remote(Protocol):
    """The other services' operations the saga uses (RPC in production)."""

    def availability(self, product_ids: list[str]) -> dict[str, Any]: ...
    def get_address(self, user_id: str, address_id: str) -> dict[str, Any]: ...
    def reserve(
        self, order_id: str, items: list[dict[str, Any]], ttl_seconds: int
    ) -> dict[str, Any]: ...
    def commit_reservation(self, order_id: str) -> dict[str, Any]: ...
    def release_reservation(self, order_id: str, reason: str) -> dict[str, Any]: ...
    def authorize(
        self, order_id: str, amount: int, currency: str, payment_method: str, not_after: str
    ) -> dict[str, Any]: ...
    def get_payment(self, order_id: str) -> dict[str, Any]: ...
    def refund(self, order_id: str, reason: str, amount: int | None = None) -> dict[str, Any]: ...
    def extend_reservation(self, order_id: str, ttl_seconds: int) -> dict[str, Any]: ...
    def cancel_unfinished_payment(self, order_id: str) -> dict[str, Any]: ...


def shipping_fee(subtotal: int) -> int:
    free_from = env_int("ORDER_FREE_SHIPPING_FROM", 3500)
    return 0 if subtotal >= free_from else env_int("ORDER_SHIPPING_FEE", 399)


def payment_summary(payment: dict[str, Any]) -> dict[str, Any]:
    """What an order keeps about its payment (never a card number). The next action and
    client secret are what the customer's client needs to finish 3-D Secure."""
    waiting = payment.get("status") == "requires_action"
    return {
        "payment_id": payment.get("payment_id"),
        "status": payment.get("status"),
        "decline_code": payment.get("decline_code"),
        "card": payment.get("card"),
        "refunded_amount": payment.get("refunded_amount") or 0,
        "next_action": payment.get("next_action") if waiting else None,
        "client_secret": payment.get("client_secret") if waiting else None,
    }


class Checkout:
    def __init__(self, sessions: SessionFactory, remote: Remote) -> None:
        self.sessions = sessions
        self.remote = remote

    # -- placing an order ----------------------------------------------------------------

    def place_order(
        self, user_id: str, request: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        order_id = str(orders.order_id_for(user_id, idempotency_key))
        fingerprint = request_fingerprint(request)
        with self.sessions() as session:
            existing = session.get(Order, order_id)
            if existing is not None and existing.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request.",
                    {"idempotency_key": idempotency_key},
                )
            status = existing.status if existing else None
        if status == orders.PENDING_PAYMENT:
            return self._advance(order_id, request["payment_method"])
        if status is not None:
            return self._outcome(order_id)
        try:
            self._create(order_id, user_id, request, idempotency_key, fingerprint)
        except IntegrityError:
            # The same checkout was placed concurrently; continue as a replay.
            return self.place_order(user_id, request, idempotency_key)
        return self._advance(order_id, request["payment_method"])

    def _create(
        self,
        order_id: str,
        user_id: str,
        request: dict[str, Any],
        idempotency_key: str,
        fingerprint: str,
    ) -> None:
        with self.sessions() as session:
            wanted = [
                (str(line.product_id), line.quantity) for line in carts.lines(session, user_id)
            ]
        if not wanted:
            raise InvalidInput("The cart is empty.", {"field": "cart"})
        products = self.remote.availability([product_id for product_id, _ in wanted])["products"]
        unavailable = [
            product_id
            for product_id, _ in wanted
            if product_id not in products or not products[product_id]["purchasable"]
        ]
        if unavailable:
            raise Conflict(
                "Some books in the cart are no longer for sale; remove them first.",
                {"unavailable": unavailable},
            )
        try:
            address = self.remote.get_address(user_id, request["shipping_address_id"])
        except NotFound:
            raise InvalidInput(
                "shipping_address_id: no such address in your address book.",
                {"field": "shipping_address_id"},
            ) from None
        currency = products[wanted[0][0]]["price"]["currency"]
        if any(products[product_id]["price"]["currency"] != currency for product_id, _ in wanted):
            raise InvalidInput("The cart mixes currencies.", {"field": "cart"})
        subtotal = sum(products[pid]["price"]["amount"] * quantity for pid, quantity in wanted)
        shipping = shipping_fee(subtotal)
        with self.sessions() as session:
            order = Order(
                id=order_id,
                user_id=user_id,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                status=orders.PENDING_PAYMENT,
                currency=currency,
                subtotal_amount=subtotal,
                shipping_amount=shipping,
                total_amount=subtotal + shipping,
                shipping_address={field: address.get(field) for field in _ADDRESS_FIELDS},
                items=[
                    OrderItem(
                        product_id=product_id,
                        position=position,
                        title=products[product_id]["title"],
                        isbn13=products[product_id]["isbn13"],
                        unit_price_amount=products[product_id]["price"]["amount"],
                        quantity=quantity,
                    )
                    for position, (product_id, quantity) in enumerate(wanted)
                ],
            )
            session.add(order)
            session.add(
                OrderStatusChange(
                    order_id=order_id,
                    from_status=None,
                    to_status=orders.PENDING_PAYMENT,
                    reason="placed",
                    actor_id=user_id,
                    at=utcnow(),
                )
            )
            session.flush()
            session.refresh(order)
            outbox.add(session, "order.created", orders.order_to_dict(order))
            session.commit()
        log.info("order placed", extra={"order_id": order_id, "total": subtotal + shipping})

    # -- the saga ------------------------------------------------------------------------

    def _advance(self, order_id: str, payment_method: str) -> dict[str, Any]:
        with self.sessions() as session:
            order = orders.find(session, order_id)
            if order.status != orders.PENDING_PAYMENT:
                status = order.status
            else:
                status = None
                items = [
                    {"product_id": str(item.product_id), "quantity": item.quantity}
                    for item in order.items
                ]
                total, currency = order.total_amount, order.currency
                not_after = order.created_at + timedelta(seconds=orders.checkout_window_seconds())
        if status is not None:
            return self._outcome(order_id)
        ttl = orders.checkout_window_seconds() + 30
        try:
            self.remote.reserve(order_id, items, ttl)
        except Conflict as error:
            short = error.extensions.get("short_items")
            reason = "out_of_stock" if short else "reservation_lost"
            self._fail(order_id, reason, error)
        except InvalidInput as error:
            self._fail(order_id, "unavailable", error)
        try:
            payment = self.remote.authorize(
                order_id, total, currency, payment_method, isoformat(not_after)
            )
        except (InvalidInput, Conflict) as error:
            self.remote.release_reservation(order_id, "payment not possible")
            self._fail(order_id, "payment_refused", error)
        if payment["status"] == "requires_action":
            return self._await_action(order_id, payment)
        if payment["status"] != "authorized":
            self.remote.release_reservation(order_id, "payment declined")
            code = payment.get("decline_code") or "declined"
            self._fail(
                order_id,
                "payment_declined",
                PaymentDeclined(
                    f"The payment was declined ({code}).",
                    {"decline_code": code},
                ),
                payment=payment_summary(payment),
            )
        return self._settle_authorized(order_id, payment)

    def _await_action(self, order_id: str, payment: dict[str, Any]) -> dict[str, Any]:
        """The customer must authenticate the payment: hold the stock for as long as they
        may take, and answer the order (PENDING_PAYMENT) with what their client needs.
        The outcome arrives as a payment event (see :meth:`payment_settled`)."""
        self.remote.extend_reservation(order_id, orders.action_window_seconds() + 30)
        with self.sessions() as session:
            order = orders.find(session, order_id, for_update=True)
            order.payment = payment_summary(payment)
            session.flush()
            return orders.order_to_dict(order)

    def payment_settled(self, order_id: str, payment: dict[str, Any]) -> None:
        """A payment outcome learnt asynchronously (a provider webhook, relayed as
        ``payment.succeeded``/``payment.failed``): finishes a pending order. Harmless for
        an order the saga has already finished."""
        with self.sessions() as session:
            status = orders.find(session, order_id).status
        if status != orders.PENDING_PAYMENT:
            return
        try:
            if payment["status"] == "authorized":
                self._settle_authorized(order_id, payment)
            else:
                self.remote.release_reservation(order_id, "payment declined")
                code = payment.get("decline_code") or "declined"
                self._fail(
                    order_id,
                    "payment_declined",
                    PaymentDeclined(f"The payment was declined ({code}).", {"decline_code": code}),
                    payment=payment_summary(payment),
                )
        except (Conflict, PaymentDeclined):
            pass  # recorded on the order

    def payment_refunded(self, order_id: str, payment: dict[str, Any]) -> None:
        """A refund made at the provider (its dashboard): keep the order's view true, and
        a fully refunded order becomes REFUNDED."""
        with self.sessions() as session:
            order = orders.find(session, order_id, for_update=True)
            order.payment = payment_summary(payment)
            if payment["status"] == "refunded" and orders.can_move(order.status, orders.REFUNDED):
                orders.transition(
                    session, order, orders.REFUNDED, reason="refunded at the provider"
                )

    def refund(
        self, order_id: str, actor_id: str, reason: str, amount: int | None = None
    ) -> dict[str, Any]:
        """An administrator's refund, full or partial. A full refund of a paid order not
        yet shipped cancels it (its stock goes back); of a shipped or delivered one, it
        becomes REFUNDED."""
        with self.sessions() as session:
            order = orders.find(session, order_id)
            status = order.status
            paid = bool(order.payment and order.payment.get("status") in ("authorized", "refunded"))
        if status in (orders.PENDING_PAYMENT, orders.REFUNDED) or not paid:
            raise Conflict(
                "Only a paid order can be refunded.",
                {"order_id": order_id, "current_status": status},
            )
        payment = self.remote.refund(order_id, reason, amount)
        full = payment["status"] == "refunded"
        with self.sessions() as session:
            order = orders.find(session, order_id, for_update=True)
            order.payment = payment_summary(payment)
            if full and order.status == orders.PAID:
                orders.transition(
                    session, order, orders.CANCELLED, reason=reason, actor_id=actor_id
                )
                order.cancel_reason = "refunded"
                order.compensation_pending = True  # the stock goes back; nothing left to refund
            elif full and orders.can_move(order.status, orders.REFUNDED):
                orders.transition(session, order, orders.REFUNDED, reason=reason, actor_id=actor_id)
        self.compensate(order_id)
        with self.sessions() as session:
            return orders.order_to_dict(orders.find(session, order_id))

    def _settle_authorized(self, order_id: str, payment: dict[str, Any]) -> dict[str, Any]:
        try:
            self.remote.commit_reservation(order_id)
        except (Conflict, NotFound):
            # Paid, but the stock went back meanwhile (the reservation expired): the
            # customer must not pay for books we cannot send.
            refunded = self.remote.refund(order_id, "reservation expired before payment")
            self._fail(
                order_id,
                "reservation_lost",
                Conflict(
                    "The checkout took too long and the books were released; nothing was charged."
                ),
                payment=payment_summary(refunded),
            )
        with self.sessions() as session:
            order = orders.find(session, order_id, for_update=True)
            if order.status == orders.PENDING_PAYMENT:
                order.payment = payment_summary(payment)
                orders.transition(session, order, orders.PAID, reason="payment authorized")
                carts.clear(session, str(order.user_id), [item.product_id for item in order.items])
                log.info("order paid", extra={"order_id": order_id})
            elif order.status == orders.CANCELLED and not order.compensation_pending:
                # Cancelled (by the timer) while the payment went through: give it back.
                order.payment = payment_summary(payment)
                order.compensation_pending = True
                session.commit()
                self.compensate(order_id)
            return orders.order_to_dict(order)

    def _fail(
        self,
        order_id: str,
        reason: str,
        error: BookstoreError,
        payment: dict[str, Any] | None = None,
    ) -> NoReturn:
        """Cancels the pending order, records why (for replays), and raises ``error``."""
        extensions = {**error.extensions, "order_id": order_id}
        with self.sessions() as session:
            order = orders.find(session, order_id, for_update=True)
            if order.status == orders.PENDING_PAYMENT:
                order.cancel_reason = reason
                order.failure = {
                    "error": type(error).__name__,
                    "detail": error.detail,
                    "extensions": extensions,
                }
                if payment is not None:
                    order.payment = payment
                orders.transition(session, order, orders.CANCELLED, reason=reason)
        raise type(error)(error.detail, extensions)

    def _outcome(self, order_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            order = orders.find(session, order_id)
            failure = order.failure
            view = orders.order_to_dict(order)
        if failure and failure.get("error") in _REPLAYABLE_ERRORS:
            raise _REPLAYABLE_ERRORS[failure["error"]](failure["detail"], failure["extensions"])
        return view

    # -- after checkout ------------------------------------------------------------------

    def cancel(self, order_id: str, actor_id: str, *, owner_id: str | None) -> dict[str, Any]:
        """Cancels a paid order before it ships: stock goes back, the payment is refunded
        (``owner_id`` None: an admin, who may cancel anyone's)."""
        with self.sessions() as session:
            order = (
                orders.find_owned(session, order_id, owner_id, for_update=True)
                if owner_id is not None
                else orders.find(session, order_id, for_update=True)
            )
            if order.status == orders.PENDING_PAYMENT:
                raise Conflict(
                    "The payment is still being processed; try again in a minute.",
                    {"order_id": order_id, "current_status": order.status},
                )
            orders.transition(
                session, order, orders.CANCELLED, reason="cancelled on request", actor_id=actor_id
            )
            order.cancel_reason = "cancelled_on_request"
            order.compensation_pending = True
        self.compensate(order_id)
        with self.sessions() as session:
            return orders.order_to_dict(orders.find(session, order_id))

    def compensate(self, order_id: str) -> None:
        """Gives back the stock and refunds the payment of a cancelled order; safe to
        repeat. A failure leaves ``compensation_pending`` for the timer."""
        with self.sessions() as session:
            order = orders.find(session, order_id)
            if not order.compensation_pending:
                return
            payment_status = (order.payment or {}).get("status")
        try:
            self.remote.release_reservation(order_id, "order cancelled")
            refund = (
                self.remote.refund(order_id, "order cancelled")
                if payment_status in ("authorized", "refunded")
                else None
            )
        except BookstoreError as error:
            log.warning("compensation postponed: %s", error, extra={"order_id": order_id})
            return
        with self.sessions() as session:
            order = orders.find(session, order_id, for_update=True)
            if not order.compensation_pending:
                return
            order.compensation_pending = False
            if refund is not None:
                order.payment = payment_summary(refund)
                if orders.can_move(order.status, orders.REFUNDED):
                    orders.transition(session, order, orders.REFUNDED, reason="payment refunded")

    def converge(self, limit: int = 50) -> int:
        """Settles checkouts left unfinished past their window, and retries pending
        compensations. Returns how many orders it looked at."""
        overdue = _overdue()
        with self.sessions() as session:
            order_ids = [
                str(order_id)
                for order_id in session.scalars(
                    select(Order.id)
                    .where(
                        or_(
                            (Order.status == orders.PENDING_PAYMENT) & (Order.created_at < overdue),
                            Order.compensation_pending,
                        )
                    )
                    .order_by(Order.created_at)
                    .limit(limit)
                )
            ]
        for order_id in order_ids:
            try:
                self.settle(order_id)
            except BookstoreError as error:
                log.warning("could not settle order yet: %s", error, extra={"order_id": order_id})
        return len(order_ids)

    def settle(self, order_id: str) -> None:
        """Finishes one order if its checkout is over (or compensation is pending);
        does nothing to an order still inside its checkout window."""
        with self.sessions() as session:
            order = orders.find(session, order_id)
            pending_compensation, status = order.compensation_pending, order.status
            created_at = order.created_at
        if pending_compensation:
            self.compensate(order_id)
            return
        if status != orders.PENDING_PAYMENT or created_at > _overdue():
            return
        try:
            payment = self.remote.get_payment(order_id)
        except NotFound:
            payment = None
        if payment is not None and payment["status"] == "requires_action":
            if created_at > utcnow() - timedelta(seconds=orders.action_window_seconds()):
                return  # the customer may still be authenticating
            payment = self.remote.cancel_unfinished_payment(order_id)
        try:
            if payment is not None and payment["status"] == "authorized":
                self._settle_authorized(order_id, payment)
                return
            self.remote.release_reservation(order_id, "checkout not finished")
            reason = "payment_declined" if payment is not None else "checkout_abandoned"
            self._fail(
                order_id,
                reason,
                Conflict("The checkout did not finish in time; nothing was charged."),
                payment=payment_summary(payment) if payment else None,
            )
        except (Conflict, InvalidInput, PaymentDeclined):
            pass  # settled: _fail and _settle_authorized record the outcome, then raise
        log.info("stale checkout settled", extra={"order_id": order_id})


def _overdue() -> Any:
    """Orders placed before this have had their whole checkout window."""
    return utcnow() - timedelta(seconds=orders.checkout_window_seconds()) - SETTLE_MARGIN
