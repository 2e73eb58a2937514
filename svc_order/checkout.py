"""The checkout saga: reserve stock, authorize payment, then mark the order paid, or
compensate. Orchestrated here, step by step, each step idempotent on the order id; what
each outcome means for the order is the order's to decide (svc_order/domain.py).

    place order (PENDING_PAYMENT) ─► catalog.reserve ─► payment.authorize ─► catalog.commit ─► PAID
                                          │ short            │ declined          │ reservation lost
                                          ▼                  ▼                   ▼
                                      CANCELLED   release + CANCELLED   refund + CANCELLED

No database transaction is held across a call to another service, and each step's state
is committed, in one transaction, before the next call. Replaying the request
(same ``Idempotency-Key``) resumes an unfinished order or answers its recorded outcome.
If this service dies or a call times out midway, the order stays PENDING_PAYMENT and
:meth:`Checkout.converge` (a timer) settles it once its checkout window has passed:
payments refuses to authorize after that window, so what it reports then is final.
Cancelling a paid order releases (restocks) its stock and refunds its payment; those
compensations are retried by the same timer until they succeed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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
from svc_order import carts, domain, orders
from svc_order.models import Order, OrderItem, OrderStatusChange, outbox
from svc_order.settings import Settings

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
    def shipping_details(self, user_id: str, address_id: str) -> dict[str, Any]: ...
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
    settings = Settings.current()
    return 0 if subtotal >= settings.free_shipping_from else settings.shipping_fee


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


@dataclass(frozen=True)
class _Placed:
    """What the saga's remote calls need of a placed order."""

    id: str
    items: list[dict[str, Any]]
    total: int
    currency: str
    created_at: datetime


def _placed(row: Order) -> _Placed:
    return _Placed(
        id=str(row.id),
        items=[
            {"product_id": str(item.product_id), "quantity": item.quantity} for item in row.items
        ],
        total=row.total_amount,
        currency=row.currency,
        created_at=row.created_at,
    )


def _declined(payment: dict[str, Any]) -> PaymentDeclined:
    code = payment.get("decline_code") or "declined"
    return PaymentDeclined(f"The payment was declined ({code}).", {"decline_code": code})


def _checkout_window() -> timedelta:
    return timedelta(seconds=orders.checkout_window_seconds())


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
            if existing is not None and existing.status != orders.PENDING_PAYMENT:
                return _outcome(existing)
            placed = _placed(existing) if existing is not None else None
            wanted = (
                [(str(line.product_id), line.quantity) for line in carts.lines(session, user_id)]
                if existing is None
                else []
            )
        if placed is None:
            try:
                placed = self._create(
                    order_id, user_id, request, idempotency_key, fingerprint, wanted
                )
            except IntegrityError:
                # The same checkout was placed concurrently; continue as a replay.
                return self.place_order(user_id, request, idempotency_key)
        return self._advance(placed, request["payment_method"])

    def _create(
        self,
        order_id: str,
        user_id: str,
        request: dict[str, Any],
        idempotency_key: str,
        fingerprint: str,
        wanted: list[tuple[str, int]],
    ) -> _Placed:
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
            details = self.remote.shipping_details(user_id, request["shipping_address_id"])
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
            row = Order(
                id=order_id,
                user_id=user_id,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                status=orders.PENDING_PAYMENT,
                currency=currency,
                subtotal_amount=subtotal,
                shipping_amount=shipping,
                total_amount=subtotal + shipping,
                shipping_address={
                    field: details["address"].get(field) for field in _ADDRESS_FIELDS
                },
                contact=details.get("contact"),
                history=[],
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
            session.add(row)
            session.flush()  # created_at comes back with the INSERT (RETURNING)
            order = domain.Order.place(order_id, user_id, row.created_at)
            for change in order.changes:
                row.history.append(
                    OrderStatusChange(
                        order_id=order_id,
                        from_status=change.from_status,
                        to_status=change.to_status,
                        reason=change.reason,
                        actor_id=user_id,
                        at=row.created_at,
                    )
                )
            session.flush()
            outbox.add(session, "order.created", orders.event_data(row))
            placed = _placed(row)
        log.info("order placed", extra={"order_id": order_id, "total": subtotal + shipping})
        return placed

    # -- the saga ------------------------------------------------------------------------

    def _advance(self, placed: _Placed, payment_method: str) -> dict[str, Any]:
        """Reserve, authorize, then settle: each remote call's outcome is given to the
        order, whose decision is committed before the next call."""
        order_id = placed.id
        try:
            self.remote.reserve(order_id, placed.items, orders.checkout_window_seconds() + 30)
        except Conflict as error:
            reason = "out_of_stock" if error.extensions.get("short_items") else "reservation_lost"
            raise self._give_up(order_id, reason, error) from None
        except InvalidInput as error:
            raise self._give_up(order_id, "unavailable", error) from None
        not_after = placed.created_at + _checkout_window()
        try:
            payment = self.remote.authorize(
                order_id, placed.total, placed.currency, payment_method, isoformat(not_after)
            )
        except (InvalidInput, Conflict) as error:
            self.remote.release_reservation(order_id, "payment not possible")
            raise self._give_up(order_id, "payment_refused", error) from None
        if payment["status"] == "requires_action":
            return self._await_customer(order_id, payment)
        if payment["status"] != "authorized":
            self.remote.release_reservation(order_id, "payment declined")
            raise self._give_up(
                order_id, "payment_declined", _declined(payment), payment_summary(payment)
            )
        return self._settle_authorized(order_id, payment)

    def _await_customer(self, order_id: str, payment: dict[str, Any]) -> dict[str, Any]:
        """The customer must authenticate the payment: hold the stock for as long as they
        may take, and answer the order (PENDING_PAYMENT) with what their client needs.
        The outcome arrives as a payment event (see :meth:`payment_settled`)."""
        self.remote.extend_reservation(order_id, orders.action_window_seconds() + 30)
        with self.sessions() as session:
            row = orders.find(session, order_id, for_update=True)
            order = orders.to_domain(row)
            order.await_customer(payment_summary(payment))
            orders.save(session, row, order)
            return orders.order_to_dict(row)

    def _settle_authorized(self, order_id: str, payment: dict[str, Any]) -> dict[str, Any]:
        """The money is authorized: take the stock for good, then the order is PAID (and
        the books leave the cart) in one transaction."""
        try:
            self.remote.commit_reservation(order_id)
        except (Conflict, NotFound):
            # Paid, but the stock went back meanwhile (the reservation expired): the
            # customer must not pay for books we cannot send.
            refunded = self.remote.refund(order_id, "reservation expired before payment")
            raise self._give_up(
                order_id,
                "reservation_lost",
                Conflict(
                    "The checkout took too long and the books were released; nothing was charged."
                ),
                payment_summary(refunded),
            ) from None
        with self.sessions() as session:
            row = orders.find(session, order_id, for_update=True)
            order = orders.to_domain(row)
            was_pending = order.in_checkout
            must_refund = order.mark_paid(payment_summary(payment))
            orders.save(session, row, order)
            if was_pending:
                carts.clear(session, order.user_id, [item.product_id for item in row.items])
                log.info("order paid", extra={"order_id": order_id})
            view = orders.order_to_dict(row)
        if must_refund:
            # Cancelled (by the timer) while the payment went through: give it back.
            self.compensate(order_id)
        return view

    def _give_up(
        self,
        order_id: str,
        reason: str,
        error: BookstoreError,
        payment: dict[str, Any] | None = None,
    ) -> BookstoreError:
        """Records that the checkout failed (the order decides whether it still can) and
        returns the error to answer with, for the caller to raise."""
        with self.sessions() as session:
            row = orders.find(session, order_id, for_update=True)
            order = orders.to_domain(row)
            answer = order.fail(reason, error, payment)
            orders.save(session, row, order)
        return answer

    # -- payment outcomes learnt by event ------------------------------------------------

    def payment_settled(self, order_id: str, payment: dict[str, Any]) -> None:
        """A payment outcome learnt asynchronously (a provider webhook, relayed as
        ``payment.succeeded``/``payment.failed``): finishes an order waiting for its
        customer, or one whose saga died. An order whose saga is still running, or that
        is finished, is left alone (see ``Order.settles_by_payment_event``)."""
        with self.sessions() as session:
            order = orders.to_domain(orders.find(session, order_id))
        if not order.settles_by_payment_event(utcnow(), _checkout_window()):
            return
        if payment["status"] == "authorized":
            # Conflict: the stock was lost meanwhile; refunded and recorded on the order.
            with contextlib.suppress(Conflict):
                self._settle_authorized(order_id, payment)
            return
        self.remote.release_reservation(order_id, "payment declined")
        self._give_up(order_id, "payment_declined", _declined(payment), payment_summary(payment))

    def payment_refunded(self, order_id: str, payment: dict[str, Any]) -> None:
        """A refund made at the provider (its dashboard): keep the order's view true, and
        a fully refunded order becomes REFUNDED."""
        with self.sessions() as session:
            row = orders.find(session, order_id, for_update=True)
            order = orders.to_domain(row)
            order.payment = payment_summary(payment)
            if payment["status"] == "refunded" and domain.can_move(order.status, orders.REFUNDED):
                order.move(orders.REFUNDED, "refunded at the provider")
            orders.save(session, row, order)

    # -- after checkout ------------------------------------------------------------------

    def refund(
        self, order_id: str, actor_id: str, reason: str, amount: int | None = None
    ) -> dict[str, Any]:
        """An administrator's refund, full or partial. A full refund of a paid order not
        yet shipped cancels it (its stock goes back); of a shipped or delivered one, it
        becomes REFUNDED."""
        with self.sessions() as session:
            refusal = orders.to_domain(orders.find(session, order_id)).refund_failure()
        if refusal is not None:
            raise refusal
        payment = self.remote.refund(order_id, reason, amount)
        with self.sessions() as session:
            row = orders.find(session, order_id, for_update=True)
            order = orders.to_domain(row)
            order.record_refund(payment_summary(payment), reason, actor_id)
            orders.save(session, row, order)
        self.compensate(order_id)
        with self.sessions() as session:
            return orders.order_to_dict(orders.find(session, order_id))

    def cancel(self, order_id: str, actor_id: str, *, owner_id: str | None) -> dict[str, Any]:
        """Cancels a paid order before it ships: stock goes back, the payment is refunded
        (``owner_id`` None: an admin, who may cancel anyone's)."""
        with self.sessions() as session:
            row = (
                orders.find_owned(session, order_id, owner_id, for_update=True)
                if owner_id is not None
                else orders.find(session, order_id, for_update=True)
            )
            order = orders.to_domain(row)
            order.cancel(actor_id)
            orders.save(session, row, order)
        self.compensate(order_id)
        with self.sessions() as session:
            return orders.order_to_dict(orders.find(session, order_id))

    def compensate(self, order_id: str) -> None:
        """Gives back the stock and refunds the payment of a cancelled order; safe to
        repeat. A failure leaves ``compensation_pending`` for the timer."""
        with self.sessions() as session:
            order = orders.to_domain(orders.find(session, order_id))
        if not order.compensation_pending:
            return
        try:
            self.remote.release_reservation(order_id, "order cancelled")
            refund = self.remote.refund(order_id, "order cancelled") if order.charged else None
        except BookstoreError as error:
            log.warning("compensation postponed: %s", error, extra={"order_id": order_id})
            return
        with self.sessions() as session:
            row = orders.find(session, order_id, for_update=True)
            order = orders.to_domain(row)
            if not order.compensation_pending:
                return
            order.compensated(payment_summary(refund) if refund is not None else None)
            orders.save(session, row, order)

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
            order = orders.to_domain(orders.find(session, order_id))
        if order.compensation_pending:
            self.compensate(order_id)
            return
        if not order.is_overdue(utcnow(), _checkout_window() + SETTLE_MARGIN):
            return
        try:
            payment = self.remote.get_payment(order_id)
        except NotFound:
            payment = None
        if payment is not None and payment["status"] == "requires_action":
            if order.created_at > utcnow() - timedelta(seconds=orders.action_window_seconds()):
                return  # the customer may still be authenticating
            payment = self.remote.cancel_unfinished_payment(order_id)
        if payment is not None and payment["status"] == "authorized":
            # Conflict: the stock was lost meanwhile; refunded and recorded on the order.
            with contextlib.suppress(Conflict):
                self._settle_authorized(order_id, payment)
        else:
            self.remote.release_reservation(order_id, "checkout not finished")
            self._give_up(
                order_id,
                "payment_declined" if payment is not None else "checkout_abandoned",
                Conflict("The checkout did not finish in time; nothing was charged."),
                payment_summary(payment) if payment else None,
            )
        log.info("stale checkout settled", extra={"order_id": order_id})


def _outcome(row: Order) -> dict[str, Any]:
    """A finished order's answer to a replay: the order, or the error it first got."""
    failure = row.failure
    if failure and failure.get("error") in _REPLAYABLE_ERRORS:
        raise _REPLAYABLE_ERRORS[failure["error"]](failure["detail"], failure["extensions"])
    return orders.order_to_dict(row)


def _overdue() -> Any:
    """Orders placed before this have had their whole checkout window."""
    return utcnow() - _checkout_window() - SETTLE_MARGIN
