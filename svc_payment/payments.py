"""Payments: authorize once per order, refund, and the log of every attempt.

The rules the order saga relies on (docs/decisions/0030):

- One payment per order. ``authorize`` claims the order's row with an INSERT on the
  unique ``order_id``; a concurrent call for the same order blocks on that index until
  the first commits, then finds its payment and answers with it. So concurrent and
  repeated calls produce exactly one payment and one provider authorization.
- A replay returns the first outcome unchanged, a decline included (a new attempt is a
  new order). A replay with another amount or currency is a :class:`Conflict`: the
  caller is confused about what it is paying for.
- ``not_after`` is the caller's deadline. Once it has passed, an order with no payment
  can never get one: ``authorize`` refuses with a Conflict and records nothing, so the
  order service's timer, having given up, can rely on no payment appearing later.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common import context
from common.db import isoformat, new_id, parse_id, utcnow
from common.errors import BookstoreError, Conflict, InvalidInput, NotFound
from common.money import MAX_AMOUNT, validate_currency
from svc_payment import domain
from svc_payment.models import Payment, PaymentAttempt, Refund, outbox
from svc_payment.models import ProviderEvent as ProviderEventRecord
from svc_payment.providers.base import PaymentProvider, ProviderEvent, ProviderPayment

AUTHORIZED, REFUNDED = domain.AUTHORIZED, domain.REFUNDED
DECLINED = "declined"
REQUIRES_ACTION, CANCELED = "requires_action", "canceled"
# Attempt outcomes besides the statuses above.
REFUSED, REPLAYED = "refused", "replayed"
AUTHORIZE, REFUND = "authorize", "refund"


def payment_as_dict(payment: Payment) -> dict[str, Any]:
    """A payment on the wire (the RPC answer and the data of its events)."""
    return {
        "payment_id": str(payment.id),
        "order_id": str(payment.order_id),
        "status": payment.status,
        "decline_code": payment.decline_code,
        "amount": payment.amount,
        "currency": payment.currency,
        "card": {"brand": payment.card_brand, "last4": payment.card_last4},
        "refunded_amount": payment.refunded_amount or 0,
        "next_action": payment.next_action,
        "client_secret": payment.client_secret,
        "created_at": isoformat(payment.created_at),
    }


def refund_as_dict(refund: Refund) -> dict[str, Any]:
    return {
        "refund_id": str(refund.id),
        "amount": refund.amount,
        "reason": refund.reason,
        "provider_reference": refund.provider_reference,
        "origin": refund.origin,
        "created_at": isoformat(refund.created_at),
    }


def attempt_as_dict(attempt: PaymentAttempt) -> dict[str, Any]:
    return {
        "operation": attempt.operation,
        "outcome": attempt.outcome,
        "decline_code": attempt.decline_code,
        "detail": attempt.detail,
        "amount": attempt.amount,
        "currency": attempt.currency,
        "payment_id": None if attempt.payment_id is None else str(attempt.payment_id),
        "provider": attempt.provider,
        "provider_reference": attempt.provider_reference,
        "correlation_id": attempt.correlation_id,
        "attempted_at": isoformat(attempt.attempted_at),
    }


def validate_amount(amount: Any) -> int:
    # bool is an int in Python; True is not an amount.
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidInput(
            f"amount: a whole number of minor units from 1 to {MAX_AMOUNT}.", {"field": "amount"}
        )
    return amount


def parse_deadline(raw: Any) -> datetime:
    """``not_after`` as an aware datetime; a time without a UTC offset is ambiguous."""
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput(
            "not_after: an ISO 8601 timestamp with a UTC offset.", {"field": "not_after"}
        )
    return moment


def _record(
    session: Session, order_id: uuid.UUID, operation: str, outcome: str, **fields: Any
) -> None:
    session.add(
        PaymentAttempt(
            order_id=order_id,
            operation=operation,
            outcome=outcome,
            correlation_id=context.current().correlation_id,
            **fields,
        )
    )


def _refuse(
    session: Session, order_id: uuid.UUID, operation: str, error: BookstoreError, **fields: Any
) -> BookstoreError:
    """Undoes the transaction's work, keeps a record of the refusal, and returns the error
    for the caller to raise."""
    session.rollback()
    _record(session, order_id, operation, REFUSED, detail=error.detail, **fields)
    session.commit()
    return error


def authorize(
    session: Session,
    provider: PaymentProvider,
    *,
    order_id: str,
    amount: int,
    currency: str,
    payment_method: str,
    not_after: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Authorizes the order's payment once; see the module docstring for the rules.
    The caller commits."""
    order_uuid = parse_id(order_id, "order_id")
    validate_amount(amount)
    validate_currency(currency)
    deadline = parse_deadline(not_after)
    requested = {"amount": amount, "currency": currency}

    payment_id = new_id()
    claimed = session.execute(
        insert(Payment)
        .values(
            id=payment_id,
            order_id=order_uuid,
            # Placeholders, replaced below before this transaction commits: no other
            # transaction ever sees them.
            status="pending",
            card_brand="",
            card_last4="",
            provider=provider.name,
            provider_reference="",
            **requested,
        )
        .on_conflict_do_nothing(index_elements=[Payment.order_id])
        .returning(Payment.id)
    ).scalar()
    if claimed is None:
        return _replay(session, order_uuid, requested)

    if (now or utcnow()) > deadline:
        session.rollback()
        raise Conflict(
            "The checkout expired before the payment was authorized.",
            {"order_id": str(order_uuid), "not_after": isoformat(deadline)},
        )
    try:
        result = provider.authorize(
            order_id=str(order_uuid), payment_method=payment_method, **requested
        )
    except InvalidInput as error:
        raise _refuse(
            session, order_uuid, AUTHORIZE, error, provider=provider.name, **requested
        ) from None

    payment = session.get(Payment, payment_id)
    if result.requires_action:
        payment.status = REQUIRES_ACTION
        payment.next_action = result.next_action
        payment.client_secret = result.client_secret
    else:
        payment.status = AUTHORIZED if result.approved else DECLINED
    payment.decline_code = result.decline_code
    payment.card_brand = result.card.brand
    payment.card_last4 = result.card.last4
    payment.provider_reference = result.reference
    session.flush()
    session.refresh(payment)  # created_at comes from the database clock
    _record(
        session,
        order_uuid,
        AUTHORIZE,
        payment.status,
        payment_id=payment.id,
        decline_code=payment.decline_code,
        provider=provider.name,
        provider_reference=result.reference,
        **requested,
    )
    answer = payment_as_dict(payment)
    if payment.status == AUTHORIZED:
        outbox.add(session, "payment.succeeded", _event_data(payment))
    elif payment.status == DECLINED:
        outbox.add(session, "payment.failed", _event_data(payment))
    return answer


def _event_data(payment: Payment) -> dict[str, Any]:
    """A payment in an event: never the client secret (events travel far)."""
    data = payment_as_dict(payment)
    data.pop("client_secret")
    return data


def _replay(session: Session, order_id: uuid.UUID, requested: dict[str, Any]) -> dict[str, Any]:
    payment = session.scalars(
        select(Payment).where(Payment.order_id == order_id).with_for_update()
    ).one()
    if (payment.amount, payment.currency) != (requested["amount"], requested["currency"]):
        raise _refuse(
            session,
            order_id,
            AUTHORIZE,
            Conflict(
                "This order was already paid for with a different amount or currency.",
                {
                    "order_id": str(order_id),
                    "amount": payment.amount,
                    "currency": payment.currency,
                },
            ),
            payment_id=payment.id,
            **requested,
        )
    _record(
        session,
        order_id,
        AUTHORIZE,
        REPLAYED,
        payment_id=payment.id,
        decline_code=payment.decline_code,
        provider=payment.provider,
        provider_reference=payment.provider_reference,
        **requested,
    )
    return payment_as_dict(payment)


def find_payment(session: Session, order_id: str, *, for_update: bool = False) -> Payment:
    statement = select(Payment).where(Payment.order_id == parse_id(order_id, "order_id"))
    if for_update:
        statement = statement.with_for_update()
    payment = session.scalars(statement).one_or_none()
    if payment is None:
        raise NotFound("This order has no payment.", {"order_id": str(order_id)})
    return payment


def get_payment(session: Session, order_id: str) -> dict[str, Any]:
    return payment_as_dict(find_payment(session, order_id))


def refund(
    session: Session,
    provider: PaymentProvider,
    order_id: str,
    reason: str,
    amount: int | None = None,
) -> dict[str, Any]:
    """Refunds ``amount`` (None: all that is left) of the order's payment. The sum of
    refunds never exceeds the amount paid; refunding a fully refunded payment in full
    again changes nothing. The caller commits."""
    domain.check_refund_reason(reason)
    payment = find_payment(session, order_id, for_update=True)
    if payment.status == REFUNDED and amount is None:
        return payment_as_dict(payment)
    if payment.status not in domain.REFUNDABLE_STATUSES:
        raise Conflict(
            f"A {payment.status} payment has nothing to refund.",
            {"order_id": str(payment.order_id), "payment_status": payment.status},
        )
    amount = domain.refund_amount(
        amount, domain.refundable(payment.amount, payment.refunded_amount)
    )
    refund_row = Refund(
        id=new_id(), payment_id=payment.id, amount=amount, reason=reason, origin="api"
    )
    # Our row lock is held across the provider call, so a concurrent refund of the same
    # order waits and then sees what is left, instead of refunding twice.
    refund_row.provider_reference = provider.refund(
        reference=payment.provider_reference,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        idempotency_key=str(refund_row.id),
    )
    session.add(refund_row)
    _apply_refund(session, payment, amount, reason, refund_row.provider_reference)
    return payment_as_dict(payment)


def _apply_refund(
    session: Session, payment: Payment, amount: int, reason: str, reference: str | None
) -> None:
    payment.refunded_amount = (payment.refunded_amount or 0) + amount
    if domain.fully_refunded(payment.amount, payment.refunded_amount):
        payment.status = REFUNDED
        payment.refunded_at = utcnow()
    payment.refund_reason = reason
    payment.refund_reference = reference
    session.flush()
    _record(
        session,
        payment.order_id,
        REFUND,
        REFUNDED,
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        provider=payment.provider,
        provider_reference=reference,
    )
    outbox.add(
        session,
        "payment.refunded",
        {
            **_event_data(payment),
            "reason": reason,
            "refund_amount": amount,
            "fully_refunded": payment.status == REFUNDED,
        },
    )


def list_refunds(session: Session, order_id: str) -> list[dict[str, Any]]:
    payment = find_payment(session, order_id)
    rows = session.scalars(
        select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.created_at)
    )
    return [refund_as_dict(row) for row in rows]


def apply_provider_event(session: Session, event: ProviderEvent) -> dict[str, Any]:
    """Applies a verified provider webhook once. Events may arrive late, twice or out of
    order: a duplicate is ignored, and a late failure never undoes a success."""
    claimed = session.execute(
        insert(ProviderEventRecord)
        .values(id=event.id, type=event.type, reference=event.reference, outcome="applied")
        .on_conflict_do_nothing()
        .returning(ProviderEventRecord.id)
    ).scalar()
    if claimed is None:
        return {"event_id": event.id, "outcome": "duplicate"}
    record = session.get(ProviderEventRecord, event.id)
    payment = (
        session.scalars(
            select(Payment).where(Payment.provider_reference == event.reference).with_for_update()
        ).first()
        if event.reference
        else None
    )
    if event.kind is None or payment is None:
        record.outcome = "unmatched" if event.kind else "ignored"
        return {"event_id": event.id, "outcome": record.outcome}
    if event.kind == "succeeded" and payment.status == REQUIRES_ACTION:
        payment.status = AUTHORIZED
        payment.next_action = None
        _settled_by_provider(session, payment, "payment.succeeded")
    elif event.kind == "failed" and payment.status == REQUIRES_ACTION:
        payment.status = DECLINED
        payment.decline_code = event.decline_code or "authentication_failed"
        payment.next_action = None
        _settled_by_provider(session, payment, "payment.failed")
    elif event.kind == "refunded" and payment.status in domain.REFUNDABLE_STATUSES:
        unknown = domain.refunded_elsewhere(event.refunded_amount, payment.refunded_amount)
        if unknown == 0:
            record.outcome = "ignored"
        else:
            known = event.refund_reference and session.scalar(
                select(Refund.id).where(Refund.provider_reference == event.refund_reference)
            )
            session.add(
                Refund(
                    id=new_id(),
                    payment_id=payment.id,
                    amount=unknown,
                    reason="refunded at the provider",
                    provider_reference=None if known else event.refund_reference,
                    origin="provider",
                )
            )
            _apply_refund(
                session, payment, unknown, "refunded at the provider", event.refund_reference
            )
    else:
        record.outcome = "ignored"
    return {"event_id": event.id, "outcome": record.outcome, "payment": payment_as_dict(payment)}


def _settled_by_provider(session: Session, payment: Payment, event_type: str) -> None:
    session.flush()
    _record(
        session,
        payment.order_id,
        AUTHORIZE,
        payment.status,
        payment_id=payment.id,
        decline_code=payment.decline_code,
        provider=payment.provider,
        provider_reference=payment.provider_reference,
        amount=payment.amount,
        currency=payment.currency,
    )
    outbox.add(session, event_type, _event_data(payment))


def cancel_unfinished(session: Session, provider: PaymentProvider, order_id: str) -> dict[str, Any]:
    """Gives up on a payment still waiting for the customer's action (the order's time
    ran out); an already settled payment is answered unchanged."""
    payment = find_payment(session, order_id, for_update=True)
    if payment.status != REQUIRES_ACTION:
        return payment_as_dict(payment)
    provider.cancel(reference=payment.provider_reference)
    payment.status = CANCELED
    payment.decline_code = "authentication_not_completed"
    payment.next_action = None
    _settled_by_provider(session, payment, "payment.failed")
    return payment_as_dict(payment)


def reconcile(
    session: Session, provider: PaymentProvider, since: datetime, until: datetime
) -> dict[str, Any]:
    """Compares our payments created in [since, until] with the provider's records."""
    theirs = provider.list_payments(since=since, until=until)
    ours = session.scalars(
        select(Payment).where(
            Payment.created_at >= since,
            Payment.created_at <= until,
            Payment.provider == provider.name,
        )
    ).all()
    if theirs is None:
        return {
            "provider": provider.name,
            "checked": len(ours),
            "comparable": False,
            "detail": f"the {provider.name} provider keeps no records to compare with",
            "mismatches": [],
        }
    by_reference = {payment.reference: payment for payment in theirs}
    expected_status = {
        AUTHORIZED: "succeeded",
        REFUNDED: "succeeded",
        REQUIRES_ACTION: "requires_action",
        CANCELED: "canceled",
        DECLINED: "failed",
    }
    mismatches = []
    for payment in ours:
        remote = by_reference.pop(payment.provider_reference, None)
        if remote is None:
            if payment.status != DECLINED:  # a declined card may leave no intent behind
                mismatches.append(_mismatch(payment, None, "missing at the provider"))
            continue
        problems = []
        if remote.amount != payment.amount or remote.currency != payment.currency:
            problems.append("amount")
        if remote.status != expected_status.get(payment.status, remote.status):
            problems.append("status")
        if remote.refunded_amount != (payment.refunded_amount or 0):
            problems.append("refunded amount")
        if problems:
            mismatches.append(_mismatch(payment, remote, ", ".join(problems) + " differ"))
    for remote in by_reference.values():
        mismatches.append(
            {
                "order_id": remote.order_id,
                "reference": remote.reference,
                "problem": "unknown here",
                "ours": None,
                "provider": vars(remote),
            }
        )
    return {
        "provider": provider.name,
        "checked": len(ours),
        "comparable": True,
        "mismatches": mismatches,
    }


def _mismatch(payment: Payment, remote: ProviderPayment | None, problem: str) -> dict[str, Any]:
    return {
        "order_id": str(payment.order_id),
        "reference": payment.provider_reference,
        "problem": problem,
        "ours": {
            "status": payment.status,
            "amount": payment.amount,
            "currency": payment.currency,
            "refunded_amount": payment.refunded_amount or 0,
        },
        "provider": vars(remote) if remote else None,
    }


def list_attempts(session: Session, order_id: str) -> list[dict[str, Any]]:
    """Every authorize and refund call for the order, oldest first."""
    attempts = session.scalars(
        select(PaymentAttempt)
        .where(PaymentAttempt.order_id == parse_id(order_id, "order_id"))
        .order_by(PaymentAttempt.id)
    )
    return [attempt_as_dict(attempt) for attempt in attempts]
