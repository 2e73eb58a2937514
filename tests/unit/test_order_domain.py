"""The order aggregate's rules, without a database or a broker (svc_order/domain.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.errors import Conflict, PaymentDeclined
from svc_order import domain
from svc_order.domain import (
    CANCELLED,
    DELIVERED,
    PAID,
    PENDING_PAYMENT,
    REFUNDED,
    SHIPPED,
    IllegalTransition,
    Order,
    StatusChanged,
)

PLACED_AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
AUTHORIZED = {"payment_id": "p1", "status": "authorized"}


def placed() -> Order:
    order = Order.place("o1", "u1", PLACED_AT)
    order.changes.clear()
    return order


def in_status(status: str, **fields: object) -> Order:
    return Order(id="o1", user_id="u1", status=status, created_at=PLACED_AT, **fields)


def test_placing_records_the_first_change():
    order = Order.place("o1", "u1", PLACED_AT)
    assert order.status == PENDING_PAYMENT
    assert order.changes == [StatusChanged(None, PENDING_PAYMENT, "placed", "u1")]


def test_a_paid_checkout_records_the_payment_and_one_change():
    order = placed()
    assert order.mark_paid(AUTHORIZED) is False
    assert order.status == PAID
    assert order.payment == AUTHORIZED
    assert order.changes == [StatusChanged(PENDING_PAYMENT, PAID, "payment authorized")]


def test_marking_paid_again_changes_nothing():
    order = in_status(PAID, payment=AUTHORIZED)
    assert order.mark_paid(AUTHORIZED) is False
    assert order.changes == []


def test_a_payment_after_the_order_was_given_up_must_go_back():
    order = in_status(CANCELLED, cancel_reason="checkout_abandoned")
    assert order.mark_paid(AUTHORIZED) is True
    assert order.status == CANCELLED
    assert order.compensation_pending
    assert order.payment == AUTHORIZED
    # ...once: the compensation is under way
    assert order.mark_paid(AUTHORIZED) is False


def test_failing_cancels_keeps_the_answer_for_replays_and_names_the_order():
    order = placed()
    declined = {"status": "failed", "decline_code": "card_declined"}
    answer = order.fail(
        "payment_declined",
        PaymentDeclined("The payment was declined (card_declined).", {"decline_code": "x"}),
        declined,
    )
    assert isinstance(answer, PaymentDeclined)
    assert answer.extensions == {"decline_code": "x", "order_id": "o1"}
    assert order.status == CANCELLED
    assert order.cancel_reason == "payment_declined"
    assert order.payment == declined
    assert order.failure == {
        "error": "PaymentDeclined",
        "detail": "The payment was declined (card_declined).",
        "extensions": {"decline_code": "x", "order_id": "o1"},
    }
    assert order.changes == [StatusChanged(PENDING_PAYMENT, CANCELLED, "payment_declined")]


def test_failing_a_settled_order_keeps_its_outcome():
    order = in_status(PAID, payment=AUTHORIZED)
    answer = order.fail("checkout_abandoned", Conflict("Too late."))
    assert isinstance(answer, Conflict)
    assert order.status == PAID
    assert order.failure is None
    assert order.changes == []


def test_a_checkout_still_running_cannot_be_cancelled():
    with pytest.raises(IllegalTransition) as raised:
        placed().cancel("u1")
    assert raised.value.extensions["current_status"] == PENDING_PAYMENT


def test_cancelling_a_paid_order_asks_for_compensation_then_refunded():
    order = in_status(PAID, payment=AUTHORIZED)
    order.cancel("u1")
    assert (order.status, order.cancel_reason, order.compensation_pending) == (
        CANCELLED,
        "cancelled_on_request",
        True,
    )
    assert order.charged
    order.compensated({"payment_id": "p1", "status": "refunded"})
    assert order.status == REFUNDED
    assert not order.compensation_pending
    assert [change.to_status for change in order.changes] == [CANCELLED, REFUNDED]


def test_compensation_without_a_payment_keeps_the_order_cancelled():
    order = in_status(CANCELLED, compensation_pending=True)
    order.compensated(None)
    assert order.status == CANCELLED
    assert not order.compensation_pending


def test_a_full_refund_cancels_a_paid_order_and_refunds_a_delivered_one():
    paid = in_status(PAID, payment=AUTHORIZED)
    paid.record_refund({"status": "refunded"}, "damaged", "admin")
    assert (paid.status, paid.cancel_reason, paid.compensation_pending) == (
        CANCELLED,
        "refunded",
        True,
    )
    delivered = in_status(DELIVERED, payment=AUTHORIZED)
    delivered.record_refund({"status": "refunded"}, "damaged", "admin")
    assert delivered.status == REFUNDED
    partly = in_status(DELIVERED, payment=AUTHORIZED)
    partly.record_refund({"status": "authorized", "refunded_amount": 100}, "damaged", "admin")
    assert partly.status == DELIVERED
    assert partly.payment == {"status": "authorized", "refunded_amount": 100}


def test_only_a_charged_order_past_checkout_can_be_refunded():
    assert placed().refund_failure() is not None
    assert in_status(CANCELLED, payment=None).refund_failure() is not None
    assert in_status(REFUNDED, payment={"status": "refunded"}).refund_failure() is not None
    assert in_status(SHIPPED, payment=AUTHORIZED).refund_failure() is None


def test_shipping_and_delivering_follow_the_state_machine():
    order = in_status(PAID, payment=AUTHORIZED)
    order.ship("admin")
    order.deliver("admin")
    assert order.status == DELIVERED
    with pytest.raises(IllegalTransition):
        order.ship("admin")


def test_a_payment_event_settles_only_what_no_saga_is_settling():
    now = PLACED_AT + timedelta(seconds=5)
    assert not placed().settles_by_payment_event(now, WINDOW)  # the saga is running
    waiting = placed()
    waiting.await_customer({"status": "requires_action", "next_action": {}})
    assert waiting.settles_by_payment_event(now, WINDOW)
    late = PLACED_AT + WINDOW + timedelta(seconds=1)
    assert placed().settles_by_payment_event(late, WINDOW)  # its saga died
    assert not in_status(PAID).settles_by_payment_event(late, WINDOW)


def test_only_a_pending_order_can_wait_for_its_customer():
    with pytest.raises(IllegalTransition):
        in_status(PAID).await_customer({"status": "requires_action"})


@pytest.mark.parametrize("current", domain.STATUSES)
@pytest.mark.parametrize("target", domain.STATUSES)
def test_every_move_is_allowed_or_refused_with_one_error(current, target):
    order = in_status(current)
    if domain.can_move(current, target):
        order.move(target)
        assert order.status == target
    else:
        with pytest.raises(IllegalTransition) as raised:
            order.move(target)
        assert isinstance(raised.value, Conflict)  # answered as 409
        assert order.status == current
        assert order.changes == []
