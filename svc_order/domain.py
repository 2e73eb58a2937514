"""The order aggregate: an order decides its own moves, in plain Python.

    PENDING_PAYMENT ──► PAID ──► SHIPPED ──► DELIVERED ──► REFUNDED
          │               │         └────────────────────► REFUNDED
          └──► CANCELLED ◄┘ ──► REFUNDED   (a paid order, once its refund went through)

Each command (:meth:`Order.mark_paid`, :meth:`Order.fail`, :meth:`Order.cancel`...)
checks the current state, changes the order and records a :class:`StatusChanged` in
``order.changes``; the caller persists the order and publishes one ``order.<status>``
event per change (svc_order/orders.py does both in one transaction). A move the state
machine forbids raises :class:`~common.errors.IllegalTransition` (a 409), the one error
for it. Commands that
the saga may repeat (a replay, a timer racing a payment event) are no-ops on an order
that has already moved on, and say so in what they return.

Nothing here talks to a database, a broker or another service: svc_order/checkout.py
sequences the remote calls and asks the order what they mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from common.errors import BookstoreError, Conflict, IllegalTransition

PENDING_PAYMENT = "PENDING_PAYMENT"
PAID = "PAID"
SHIPPED = "SHIPPED"
DELIVERED = "DELIVERED"
CANCELLED = "CANCELLED"
REFUNDED = "REFUNDED"
STATUSES = (PENDING_PAYMENT, PAID, SHIPPED, DELIVERED, CANCELLED, REFUNDED)

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING_PAYMENT: frozenset({PAID, CANCELLED}),
    PAID: frozenset({SHIPPED, CANCELLED}),
    SHIPPED: frozenset({DELIVERED, REFUNDED}),
    DELIVERED: frozenset({REFUNDED}),
    CANCELLED: frozenset({REFUNDED}),
    REFUNDED: frozenset(),
}
#: Payment statuses that mean money was taken (and may have to be given back).
_CHARGED = ("authorized", "refunded")


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS[current]


@dataclass(frozen=True)
class StatusChanged:
    """A move of the order: recorded in its history and published as an event."""

    from_status: str | None
    to_status: str
    reason: str | None = None
    actor_id: str | None = None


@dataclass
class Order:
    """What the rules need of an order (its lines and prices never change after
    placing, so they stay with the persistence code)."""

    id: str
    user_id: str
    status: str
    created_at: datetime
    payment: dict[str, Any] | None = None
    cancel_reason: str | None = None
    failure: dict[str, Any] | None = None
    compensation_pending: bool = False
    changes: list[StatusChanged] = field(default_factory=list)

    @classmethod
    def place(cls, order_id: str, user_id: str, created_at: datetime) -> Order:
        order = cls(id=order_id, user_id=user_id, status=PENDING_PAYMENT, created_at=created_at)
        order.changes.append(StatusChanged(None, PENDING_PAYMENT, "placed", user_id))
        return order

    # -- questions -----------------------------------------------------------------------

    @property
    def in_checkout(self) -> bool:
        return self.status == PENDING_PAYMENT

    @property
    def charged(self) -> bool:
        return bool(self.payment and self.payment.get("status") in _CHARGED)

    @property
    def awaiting_customer(self) -> bool:
        """The customer is completing 3-D Secure: the outcome comes as a payment event."""
        return self.in_checkout and (self.payment or {}).get("status") == "requires_action"

    def checkout_deadline(self, window: timedelta) -> datetime:
        """Payments refuses to authorize after this; what it says then is final."""
        return self.created_at + window

    def is_overdue(self, now: datetime, window: timedelta) -> bool:
        """An unfinished checkout past its window: the saga that ran it is gone."""
        return self.in_checkout and self.created_at + window < now

    def settles_by_payment_event(self, now: datetime, window: timedelta) -> bool:
        """Whether a payment outcome learnt by event is this order's to act on: when the
        customer was authenticating, or when the checkout's saga died. Otherwise the saga
        is still running and settles the order itself (acting on the event too would
        race it, doing every remaining call twice)."""
        return self.awaiting_customer or self.is_overdue(now, window)

    def refund_failure(self) -> Conflict | None:
        """Why this order cannot be refunded by an administrator, if it cannot."""
        if self.status in (PENDING_PAYMENT, REFUNDED) or not self.charged:
            return Conflict(
                "Only a paid order can be refunded.",
                {"order_id": self.id, "current_status": self.status},
            )
        return None

    # -- the checkout ------------------------------------------------------------------

    def await_customer(self, payment: dict[str, Any]) -> None:
        """The payment needs the customer (3-D Secure): keep what their client needs."""
        self._require(PENDING_PAYMENT, "await a payment")
        self.payment = payment

    def mark_paid(self, payment: dict[str, Any]) -> bool:
        """The payment went through and the stock is ours. Returns True if the money must
        go back: the order was given up meanwhile (the timer cancelled it)."""
        if self.in_checkout:
            self.payment = payment
            self._move(PAID, "payment authorized")
            return False
        if self.status == CANCELLED and not self.compensation_pending and not self.charged:
            self.payment = payment
            self.compensation_pending = True
            return True
        return False  # already settled: a replay, or the other of saga and event

    def fail(
        self, reason: str, error: BookstoreError, payment: dict[str, Any] | None = None
    ) -> BookstoreError:
        """Gives up the checkout (``reason``: out_of_stock, payment_declined...), keeping
        ``error`` so a replay answers the same. Returns the error to answer with, naming
        the order. An order already settled keeps its outcome."""
        answer = type(error)(error.detail, {**error.extensions, "order_id": self.id})
        if self.in_checkout:
            self.cancel_reason = reason
            self.failure = {
                "error": type(error).__name__,
                "detail": error.detail,
                "extensions": answer.extensions,
            }
            if payment is not None:
                self.payment = payment
            self._move(CANCELLED, reason)
        return answer

    # -- after the checkout ------------------------------------------------------------

    def cancel(self, actor_id: str | None) -> None:
        """A customer's or an administrator's cancellation: its stock goes back and its
        payment is refunded (``compensation_pending`` until both are done)."""
        if self.in_checkout:
            raise IllegalTransition(
                "The payment is still being processed; try again in a minute.",
                {"order_id": self.id, "current_status": self.status},
            )
        self._move(CANCELLED, "cancelled on request", actor_id)
        self.cancel_reason = "cancelled_on_request"
        self.compensation_pending = True

    def record_refund(self, payment: dict[str, Any], reason: str, actor_id: str | None) -> None:
        """A refund went through (``payment`` as it is now). In full: a paid order not yet
        shipped is cancelled (its stock goes back), a shipped or delivered or cancelled
        one becomes REFUNDED."""
        self.payment = payment
        if payment.get("status") != "refunded":
            return
        if self.status == PAID:
            self._move(CANCELLED, reason, actor_id)
            self.cancel_reason = "refunded"
            self.compensation_pending = True  # the stock goes back; nothing left to refund
        elif can_move(self.status, REFUNDED):
            self._move(REFUNDED, reason, actor_id)

    def compensated(self, refund: dict[str, Any] | None) -> None:
        """The stock went back and, if there was one, the payment was refunded."""
        self.compensation_pending = False
        if refund is not None:
            self.payment = refund
            if can_move(self.status, REFUNDED):
                self._move(REFUNDED, "payment refunded")

    def ship(self, actor_id: str | None) -> None:
        self._move(SHIPPED, "by an administrator", actor_id)

    def deliver(self, actor_id: str | None) -> None:
        self._move(DELIVERED, "by an administrator", actor_id)

    def move(self, target: str, reason: str | None = None, actor_id: str | None = None) -> None:
        """Any allowed move, for callers that name the target (operators' tools)."""
        self._move(target, reason, actor_id)

    # -- the state machine ---------------------------------------------------------------

    def _move(self, target: str, reason: str | None, actor_id: str | None = None) -> None:
        if not can_move(self.status, target):
            raise IllegalTransition(
                f"An order that is {self.status} cannot become {target}.",
                {"order_id": self.id, "current_status": self.status, "requested": target},
            )
        self.changes.append(StatusChanged(self.status, target, reason, actor_id))
        self.status = target

    def _require(self, status: str, action: str) -> None:
        if self.status != status:
            raise IllegalTransition(
                f"An order that is {self.status} cannot {action}.",
                {"order_id": self.id, "current_status": self.status},
            )
