"""The payment service over RPC, as the order saga calls it (real broker and database)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import text

import common.errors  # noqa: F401 - registers the typed errors for deserialisation
from common.errors import Conflict, InvalidInput, NotFound
from tests.harness import Platform
from tests.support import eventually, outbox_events

DECLINES = {
    "pm_card_chargeDeclined": "card_declined",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
    "pm_card_chargeDeclinedIncorrectCvc": "incorrect_cvc",
    "pm_card_chargeDeclinedProcessingError": "processing_error",
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000119": "processing_error",
}


def later(minutes: int = 15) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def payment(platform: Platform):
    platform.reset_data()
    with platform.rpc() as rpc:
        yield rpc.payment


def authorize(payment, order_id: str | None = None, **overrides):
    call = {
        "order_id": order_id or str(uuid.uuid4()),
        "amount": 2598,
        "currency": "EUR",
        "payment_method": "pm_card_visa",
        "not_after": later(),
        **overrides,
    }
    return payment.authorize(**call)


def count(platform: Platform, table: str, order_id: str) -> int:
    with platform.engine("payment").connect() as connection:
        return connection.scalar(
            text(f"SELECT count(*) FROM {table} WHERE order_id = :id"), {"id": order_id}
        )


def test_ping(payment):
    assert payment.ping()["provider"] == "mock"


def test_authorize_approves_and_announces_it(platform, payment):
    order_id = str(uuid.uuid4())
    result = authorize(payment, order_id, payment_method="4242 4242 4242 4242")
    assert result["status"] == "authorized"
    assert result["decline_code"] is None
    assert result["order_id"] == order_id
    assert (result["amount"], result["currency"]) == (2598, "EUR")
    assert result["card"] == {"brand": "visa", "last4": "4242"}
    uuid.UUID(result["payment_id"])
    assert result["created_at"].endswith("Z")
    assert payment.get_payment(order_id) == result

    (event,) = outbox_events(platform, "payment", "payment.succeeded")
    assert event["source"] == "payment"
    assert event["data"]["order_id"] == order_id
    assert event["data"]["payment_id"] == result["payment_id"]
    assert (event["data"]["amount"], event["data"]["currency"]) == (2598, "EUR")
    with platform.engine("payment").connect() as connection:
        stored = " ".join(
            str(row) for row in connection.execute(text("SELECT * FROM payments")).all()
        )
        stored += " ".join(
            str(row) for row in connection.execute(text("SELECT * FROM payment_attempts")).all()
        )
    assert "42424242" not in stored, "the card number was stored"
    log = (platform.log_dir / "payment.log").read_text()
    assert "4242 4242 4242 4242" not in log


def test_the_event_leaves_the_outbox(platform, payment):
    authorize(payment)

    def published() -> None:
        with platform.engine("payment").connect() as connection:
            assert (
                connection.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
                == 0
            )

    eventually(published)


@pytest.mark.parametrize(("method", "decline_code"), sorted(DECLINES.items()))
def test_each_decline(platform, payment, method, decline_code):
    order_id = str(uuid.uuid4())
    result = authorize(payment, order_id, payment_method=method)
    assert result["status"] == "declined"
    assert result["decline_code"] == decline_code
    (event,) = outbox_events(platform, "payment", "payment.failed")
    assert event["data"]["decline_code"] == decline_code
    assert event["data"]["order_id"] == order_id
    assert outbox_events(platform, "payment", "payment.succeeded") == []


def test_a_replay_returns_the_first_outcome_unchanged(platform, payment):
    order_id = str(uuid.uuid4())
    declined = authorize(payment, order_id, payment_method="pm_card_chargeDeclined")
    # Another card does not turn a declined order into a paid one: a new try is a new order.
    assert authorize(payment, order_id, payment_method="pm_card_visa") == declined
    assert authorize(payment, order_id, payment_method="pm_card_chargeDeclined") == declined
    assert count(platform, "payments", order_id) == 1
    assert len(outbox_events(platform, "payment", "payment.failed")) == 1
    outcomes = [attempt["outcome"] for attempt in payment.list_attempts(order_id)]
    assert outcomes == ["declined", "replayed", "replayed"]


def test_concurrent_authorize_makes_one_payment(platform, payment):
    order_id = str(uuid.uuid4())
    results: list[dict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def call() -> None:
        try:
            with ClusterRpcProxy({"AMQP_URI": platform.amqp_uri}, timeout=20) as rpc:
                start.wait()
                results.append(authorize(rpc.payment, order_id))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 6
    assert len({result["payment_id"] for result in results}) == 1
    assert count(platform, "payments", order_id) == 1
    assert len(outbox_events(platform, "payment", "payment.succeeded")) == 1
    outcomes = sorted(attempt["outcome"] for attempt in payment.list_attempts(order_id))
    assert outcomes == ["authorized"] + ["replayed"] * 5


def test_another_amount_or_currency_for_the_same_order_is_a_conflict(platform, payment):
    order_id = str(uuid.uuid4())
    first = authorize(payment, order_id)
    with pytest.raises(Conflict):
        authorize(payment, order_id, amount=2599)
    with pytest.raises(Conflict):
        authorize(payment, order_id, currency="USD")
    assert payment.get_payment(order_id) == first
    outcomes = [attempt["outcome"] for attempt in payment.list_attempts(order_id)]
    assert outcomes == ["authorized", "refused", "refused"]


def test_after_not_after_nothing_is_recorded(platform, payment):
    order_id = str(uuid.uuid4())
    with pytest.raises(Conflict, match="expired"):
        authorize(payment, order_id, not_after=later(-1))
    with pytest.raises(NotFound):
        payment.get_payment(order_id)
    assert payment.list_attempts(order_id) == []
    assert count(platform, "payments", order_id) == 0
    assert outbox_events(platform, "payment", "payment.failed") == []


def test_a_payment_made_in_time_is_still_answered_after_not_after(payment):
    order_id = str(uuid.uuid4())
    first = authorize(payment, order_id)
    assert authorize(payment, order_id, not_after=later(-1)) == first


def test_refund_twice(platform, payment):
    order_id = str(uuid.uuid4())
    authorized = authorize(payment, order_id)
    refunded = payment.refund(order_id, "customer cancelled")
    assert refunded["status"] == "refunded"
    assert refunded["payment_id"] == authorized["payment_id"]
    assert payment.refund(order_id, "customer cancelled") == refunded
    (event,) = outbox_events(platform, "payment", "payment.refunded")
    assert event["data"]["order_id"] == order_id
    assert event["data"]["payment_id"] == authorized["payment_id"]
    assert event["data"]["amount"] == 2598
    assert event["data"]["reason"] == "customer cancelled"
    # Refunded stays refunded: a replayed authorize answers with the refunded payment.
    assert authorize(payment, order_id)["status"] == "refunded"
    operations = [(a["operation"], a["outcome"]) for a in payment.list_attempts(order_id)]
    assert operations == [
        ("authorize", "authorized"),
        ("refund", "refunded"),
        ("authorize", "replayed"),
    ]


def test_refund_without_payment_or_of_a_decline(payment):
    with pytest.raises(NotFound):
        payment.refund(str(uuid.uuid4()), "no such order")
    order_id = str(uuid.uuid4())
    authorize(payment, order_id, payment_method="pm_card_chargeDeclined")
    with pytest.raises(Conflict):
        payment.refund(order_id, "changed my mind")


@pytest.mark.parametrize("method", ["pm_card_nonsense", "4242424242424241", "1234", "", "tok_visa"])
def test_bad_methods_are_refused_and_recorded(platform, payment, method):
    order_id = str(uuid.uuid4())
    with pytest.raises(InvalidInput) as error:
        authorize(payment, order_id, payment_method=method)
    assert error.value.extensions == {"field": "payment_method"}
    with pytest.raises(NotFound):
        payment.get_payment(order_id)
    (attempt,) = payment.list_attempts(order_id)
    assert attempt["outcome"] == "refused"
    assert "payment_method" in attempt["detail"]
    # A refused method does not use up the order: a good one still works.
    assert authorize(payment, order_id)["status"] == "authorized"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", "not-a-uuid"),
        ("amount", 0),
        ("amount", 12.5),
        ("currency", "EURO"),
        ("not_after", "soon"),
        ("not_after", "2030-01-01T00:00:00"),
    ],
)
def test_malformed_calls(payment, field, value):
    with pytest.raises(InvalidInput) as error:
        authorize(payment, **{field: value})
    assert error.value.extensions["field"] == field
