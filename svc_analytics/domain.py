"""The rules of business analytics, without a broker or a database (docs/decisions/0130).

- **Windows in event time.** Every fact lands in the 5-minute tumbling window that holds
  its event's own ``time`` (not when it arrived), per currency.
- **The watermark** is the newest event time seen minus the out-of-orderness allowed
  (``ANALYTICS_OUT_OF_ORDERNESS``); when no event comes for a while, wall-clock time
  moves it on (``ANALYTICS_IDLE_SECONDS``) so that quiet windows close too. A window
  closes once the watermark passes its end.
- **Lateness.** An order event for a window that is closed but whose end is within
  ``ANALYTICS_ALLOWED_LATENESS`` of the watermark corrects that window; an older one
  goes to the window's *late tally*, counted apart, never dropped.
- **Refunds** correct the window of the order they refund, however old, when that order
  was counted there (a refund of a late-tallied order goes to the late tally).
- **Once.** Each envelope id is handled once (common/consumers.py) and each order is
  counted once however many ``order.paid`` envelopes name it (a backfill, a replay).

:func:`aggregate` turns a batch of envelopes into deltas; svc_analytics/ingest.py writes
them. The same function serves the live handlers, the backfill and the benchmark.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from common.errors import InvalidParameter
from common.money import MINOR_UNIT_DIGITS

WINDOW = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The event types analytics reads, by producer.
CONSUMED: dict[str, tuple[str, ...]] = {
    "order": ("order.created", "order.paid"),
    "payment": ("payment.refunded",),
}


def parse_time(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def window_start(moment: datetime) -> datetime:
    """The start of the 5-minute window that holds ``moment``."""
    seconds = (moment - EPOCH) // timedelta(seconds=1)
    step = int(WINDOW.total_seconds())
    return EPOCH + timedelta(seconds=seconds - seconds % step)


@dataclass(frozen=True)
class Settings:
    allowed_lateness: timedelta = timedelta(hours=1)
    out_of_orderness: timedelta = timedelta(seconds=10)
    idle: timedelta = timedelta(seconds=60)


def watermark(
    max_event_time: datetime | None, settings: Settings, now: datetime | None = None
) -> datetime | None:
    """How far event time is complete: the newest event seen less the out-of-orderness,
    or, given ``now`` (the timer), at least ``now`` less idleness and out-of-orderness."""
    candidates = [moment for moment in (max_event_time,) if moment is not None]
    if now is not None:
        candidates.append(now - settings.idle)
    if not candidates:
        return None
    return max(candidates) - settings.out_of_orderness


ON_TIME, CORRECTION, TOO_LATE = "on_time", "correction", "too_late"


def lateness_of(start: datetime, mark: datetime | None, settings: Settings) -> str:
    """Whether a fact for the window starting at ``start`` is on time (its window is
    open), corrects a closed window, or is beyond the allowed lateness."""
    end = start + WINDOW
    if mark is None or end > mark:
        return ON_TIME
    if end + settings.allowed_lateness > mark:
        return CORRECTION
    return TOO_LATE


# -- facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    product_id: str
    title: str | None
    quantity: int
    amount: int


@dataclass(frozen=True)
class Fact:
    """What one envelope says, in analytics' terms."""

    kind: str  # "checkout", "paid" or "refund"
    time: datetime
    order_id: str
    currency: str
    amount: int = 0
    lines: tuple[Line, ...] = ()
    country: str | None = None
    #: A refund's ``amount`` is all refunded of the order so far (payment's
    #: ``refunded_amount``), not one refund: applying it twice or out of order is harmless.
    cumulative: bool = False


class MalformedEvent(ValueError):
    """An envelope analytics cannot read (parked with the reason, never retried)."""


def fact_of(envelope: dict[str, Any]) -> Fact:
    """The fact an order or payment envelope carries; :class:`MalformedEvent` if none."""
    try:
        kind = envelope["type"]
        data = envelope["data"]
        if kind == "payment.refunded":
            cumulative = "refunded_amount" in data
            return Fact(
                "refund",
                parse_time(envelope["time"]),
                str(data["order_id"]),
                _currency(data["currency"]),
                int(data["refunded_amount"] if cumulative else data["refund_amount"]),
                cumulative=cumulative,
            )
        if kind not in ORDER_MOMENTS:
            raise MalformedEvent(f"analytics does not read {kind!r} events")
        # The order's own moment (paid_at, created_at) when it carries it: written in the
        # transaction that wrote the envelope, and what the backfill reads from orders.
        moment = parse_time(data.get(ORDER_MOMENTS[kind]) or envelope["time"])
        return order_fact("checkout" if kind == "order.created" else "paid", data, moment)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, MalformedEvent):
            raise
        raise MalformedEvent(f"{envelope.get('type')!r} envelope unreadable: {error!r}") from None


ORDER_MOMENTS = {"order.created": "created_at", "order.paid": "paid_at"}


def order_fact(kind: str, order: dict[str, Any], moment: datetime) -> Fact:
    """A checkout or payment fact of an order as svc_order shows it (event or RPC)."""
    total = order["total"]
    address = order.get("shipping_address") or {}
    lines = tuple(
        Line(
            str(item["product_id"]),
            item.get("title"),
            int(item["quantity"]),
            int((item.get("line_total") or {}).get("amount", 0))
            or int((item.get("unit_price") or {}).get("amount", 0)) * int(item["quantity"]),
        )
        for item in order["items"]
    )
    country = address.get("country")
    return Fact(
        kind,
        moment,
        str(order["id"]),
        _currency(total["currency"]),
        int(total["amount"]),
        lines,
        str(country).upper() if country else None,
    )


def facts_of_order(order: dict[str, Any]) -> list[Fact]:
    """What an order's history says (the backfill): placed, paid if it was, and all it
    has refunded, as the live events would have said it."""
    facts = [order_fact("checkout", order, parse_time(order["created_at"]))]
    if order.get("paid_at"):
        paid = order_fact("paid", order, parse_time(order["paid_at"]))
        facts.append(paid)
        refunded = int((order.get("payment") or {}).get("refunded_amount") or 0)
        if refunded:
            facts.append(
                Fact("refund", paid.time, paid.order_id, paid.currency, refunded, cumulative=True)
            )
    return facts


def _currency(raw: Any) -> str:
    if not isinstance(raw, str) or not CURRENCY.fullmatch(raw):
        raise MalformedEvent(f"currency {raw!r} is not an ISO 4217 code")
    return raw


CURRENCY = re.compile(r"[A-Z]{3}")


# -- aggregation ---------------------------------------------------------------------------


@dataclass
class Totals:
    orders: int = 0
    units: int = 0
    gross: int = 0
    refunds: int = 0
    checkouts: int = 0

    def add(self, other: Totals) -> None:
        self.orders += other.orders
        self.units += other.units
        self.gross += other.gross
        self.refunds += other.refunds
        self.checkouts += other.checkouts


@dataclass
class OrderState:
    """What analytics remembers of an order: where it was counted and what it refunded.
    ``counted`` is None until its ``order.paid`` is seen (a refund can come first)."""

    order_id: str
    currency: str
    window_start: datetime | None = None
    counted: bool | None = None
    refunded: int = 0
    #: Its ``order.created`` is counted (as a checkout).
    placed: bool = False


WindowKey = tuple[datetime, str]


@dataclass
class Batch:
    """The deltas one batch of facts makes."""

    windows: dict[WindowKey, Totals] = field(default_factory=lambda: defaultdict(Totals))
    late: dict[WindowKey, Totals] = field(default_factory=lambda: defaultdict(Totals))
    products: dict[tuple[datetime, str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    countries: dict[tuple[datetime, str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    titles: dict[str, str] = field(default_factory=dict)
    orders: dict[str, OrderState] = field(default_factory=dict)
    max_event_time: datetime | None = None
    skipped: int = 0


UNKNOWN_COUNTRY = "ZZ"


def aggregate(
    facts: list[Fact],
    known: dict[str, OrderState],
    mark: datetime | None,
    settings: Settings,
    *,
    replay: bool = False,
) -> Batch:
    """The deltas of ``facts`` given the orders already ``known`` (changed copies are in
    the result's ``orders``) and the watermark before the batch. ``replay`` (the
    backfill) places every fact in its window whatever the watermark."""
    batch = Batch()
    for fact in facts:
        if batch.max_event_time is None or fact.time > batch.max_event_time:
            batch.max_event_time = fact.time
        if fact.kind == "refund":
            _refund(batch, known, fact)
            continue
        start = window_start(fact.time)
        key = (start, fact.currency)
        late = not replay and lateness_of(start, mark, settings) == TOO_LATE
        target = batch.late if late else batch.windows
        state = batch.orders.get(fact.order_id) or known.get(fact.order_id)
        state = replace(state) if state else OrderState(fact.order_id, fact.currency)
        if fact.kind == "checkout":
            if state.placed:
                batch.skipped += 1
            else:
                state.placed = True
                batch.orders[fact.order_id] = state
                target[key].checkouts += 1
            continue
        if state.counted is not None:
            batch.skipped += 1  # this order is counted already (another envelope said so)
            continue
        state.window_start, state.counted = start, not late
        batch.orders[fact.order_id] = state
        units = sum(line.quantity for line in fact.lines)
        target[key].add(Totals(orders=1, units=units, gross=fact.amount, refunds=state.refunded))
        if late:
            continue
        for line in fact.lines:
            product = batch.products[(start, fact.currency, line.product_id)]
            product[0] += line.quantity
            product[1] += line.amount
            if line.title:
                batch.titles[line.product_id] = line.title
        country = batch.countries[(start, fact.currency, fact.country or UNKNOWN_COUNTRY)]
        country[0] += 1
        country[1] += fact.amount
    return batch


def _refund(batch: Batch, known: dict[str, OrderState], fact: Fact) -> None:
    state = batch.orders.get(fact.order_id) or known.get(fact.order_id)
    state = replace(state) if state else OrderState(fact.order_id, fact.currency)
    added = max(0, fact.amount - state.refunded) if fact.cumulative else fact.amount
    if not added:
        batch.skipped += 1  # an earlier or repeated account of what is refunded already
        return
    state.refunded += added
    batch.orders[fact.order_id] = state
    if state.counted is None:
        return  # its order.paid has not come yet: it brings the refund along
    target = batch.windows if state.counted else batch.late
    target[(state.window_start, state.currency)].refunds += added


# -- reading -------------------------------------------------------------------------------

GRANULARITIES: dict[str, timedelta] = {
    "5m": WINDOW,
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
#: The most buckets one series may have (a 5-minute series over a month is 8,640).
MAX_BUCKETS = 10_000


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime
    granularity: str
    currency: str

    @property
    def step(self) -> timedelta:
        return GRANULARITIES[self.granularity]


def _floor(moment: datetime, step: timedelta) -> datetime:
    return EPOCH + (moment - EPOCH) // step * step


def _ceil(moment: datetime, step: timedelta) -> datetime:
    return EPOCH - (EPOCH - moment) // step * step


def parse_range(
    start: str | None,
    end: str | None,
    granularity: str | None,
    currency: str | None,
    *,
    series: bool = True,
) -> Range:
    """A report's range, checked: ``InvalidParameter`` (400) for anything unusable.
    ``start`` is rounded down and ``end`` up to whole buckets. ``series``: the report
    has a row per bucket, so their number is bounded (a ranking or a total is not)."""
    granularity = granularity or "1h"
    if granularity not in GRANULARITIES:
        raise InvalidParameter(
            f"granularity must be one of {', '.join(GRANULARITIES)}.",
            {"parameter": "granularity"},
        )
    if not currency or currency not in MINOR_UNIT_DIGITS:
        raise InvalidParameter(
            "currency must be an ISO 4217 code such as EUR.", {"parameter": "currency"}
        )
    moments = {}
    for name, raw in (("start", start), ("end", end)):
        try:
            moments[name] = parse_time(str(raw))
        except (ValueError, OverflowError):
            raise InvalidParameter(
                f"{name} must be an ISO 8601 date-time between the years 1 and 9999.",
                {"parameter": name},
            ) from None
    step = GRANULARITIES[granularity]
    rounded = {}
    for name, rounding in (("start", _floor), ("end", _ceil)):
        try:  # to whole buckets, which may leave the calendar (years 1 to 9999)
            rounded[name] = rounding(moments[name], step)
        except OverflowError:
            raise InvalidParameter(
                f"{name} must be between the years 1 and 9999.", {"parameter": name}
            ) from None
    begin, finish = rounded["start"], rounded["end"]
    if finish <= begin:
        raise InvalidParameter("end must be after start.", {"parameter": "end"})
    if series and (finish - begin) / step > MAX_BUCKETS:
        raise InvalidParameter(
            f"the range holds more than {MAX_BUCKETS} buckets of {granularity}: "
            "narrow it or choose a coarser granularity.",
            {"parameter": "granularity"},
        )
    return Range(begin, finish, granularity, currency)


def figures(totals: dict[str, int]) -> dict[str, int]:
    """The derived figures of one bucket: net revenue and the average order value (gross
    over orders, rounded half up, in minor units; 0 without orders)."""
    orders, gross, refunds = totals["orders"], totals["gross"], totals["refunds"]
    checkouts = totals.get("checkouts", 0)
    return {
        **totals,
        "net": gross - refunds,
        "average_order_value": (2 * gross + orders) // (2 * orders) if orders else 0,
        # Paid orders per order placed, in basis points (10000 = all of them).
        "conversion_bp": min(10_000, orders * 10_000 // checkouts) if checkouts else 0,
    }
