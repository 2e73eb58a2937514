"""Analytics: ingesting order events into the windows, and querying the reports.

Needs only PostgreSQL; it works in a database of its own, created (and emptied) here:

    .venv/bin/python -m bench.analytics [--events 200000] [--batch 1000]
                                        [--days 90] [--orders-per-day 100000]

1. **Ingest.** A generated stream of ``order.created``, ``order.paid`` and
   ``payment.refunded`` envelopes (a day's curve, 5 % arriving up to two minutes out of
   order, 1 % duplicated, refunds of 3 % of orders) goes through the live code path
   (``svc_analytics.ingest.ingest``: handled-id claims, the watermark, corrections) in
   batches of ``--batch``, one transaction each. Prints events/s and p50/p95/p99 per batch.
2. **Queries.** The aggregates of ``--days`` days at ``--orders-per-day`` are written
   straight into the tables with SQL (what ingesting them would leave: every 5-minute
   window, ``--products-per-window`` product rows and 20 countries per window), then
   every report is asked ``--queries`` times over random ranges inside the history.
   Prints p50/p95/p99 per report.

Both go to bench/results/analytics-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.notices import silence_import_notices

silence_import_notices()

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from common.config import database_url  # noqa: E402
from ops import databases  # noqa: E402
from svc_analytics import domain, ingest, reports  # noqa: E402

RESULTS = Path(__file__).parent / "results"
COUNTRIES = ["GB", "DE", "FR", "ES", "IT", "NL", "BE", "SE", "PL", "IE"]
START = datetime(2026, 9, 1, tzinfo=UTC)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100)
    return {f"p{p}": round(cuts[p - 1] * 1000, 2) for p in (50, 95, 99)}


def _order(rng: random.Random, products: list[str], moment: datetime) -> dict:
    items = []
    for product in rng.sample(products, rng.choice((1, 1, 1, 2, 3))):
        quantity = rng.choice((1, 1, 2))
        price = rng.randrange(500, 4000, 50)
        items.append(
            {
                "product_id": product,
                "title": f"Book {product[:8]}",
                "quantity": quantity,
                "unit_price": {"amount": price, "currency": "EUR"},
                "line_total": {"amount": price * quantity, "currency": "EUR"},
            }
        )
    total = sum(item["line_total"]["amount"] for item in items)
    return {
        "id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "status": "PAID",
        "items": items,
        "total": {"amount": total, "currency": "EUR"},
        "shipping_address": {"country": rng.choice(COUNTRIES)},
        "created_at": moment.isoformat(),
        "paid_at": (moment + timedelta(seconds=2)).isoformat(),
    }


def _envelope(kind: str, source: str, moment: datetime, data: dict) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": kind,
        "source": source,
        "time": moment.isoformat(),
        "version": 1,
        "data": data,
    }


def generated_stream(events: int, seed: int = 17) -> list[dict]:
    """About ``events`` envelopes in arrival order (see the module docstring)."""
    rng = random.Random(seed)
    products = [str(uuid.uuid4()) for _ in range(2000)]
    stream: list[tuple[datetime, dict]] = []
    moment = START
    while len(stream) < events:
        moment += timedelta(seconds=rng.expovariate(1 / 0.8))
        order = _order(rng, products, moment)
        paid_at = moment + timedelta(seconds=2)
        stream.append((moment, _envelope("order.created", "order", moment, order)))
        stream.append((paid_at, _envelope("order.paid", "order", paid_at, order)))
        if rng.random() < 0.03:
            at = paid_at + timedelta(minutes=rng.randrange(5, 600))
            refund = {
                "payment_id": str(uuid.uuid4()),
                "order_id": order["id"],
                "status": "succeeded",
                "amount": order["total"]["amount"],
                "currency": "EUR",
                "refunded_amount": order["total"]["amount"] // 2,
                "refund_amount": order["total"]["amount"] // 2,
                "fully_refunded": False,
            }
            stream.append((at, _envelope("payment.refunded", "payment", at, refund)))
    # Arrival order: event time, 5 % up to two minutes late, 1 % delivered twice.
    arrivals = []
    for at, envelope in stream:
        delay = rng.uniform(0, 120) if rng.random() < 0.05 else 0.0
        arrivals.append((at + timedelta(seconds=delay), envelope))
        if rng.random() < 0.01:
            arrivals.append((at + timedelta(seconds=delay + 1), envelope))
    arrivals.sort(key=lambda pair: pair[0])
    return [envelope for _, envelope in arrivals]


def bench_ingest(url: str, events: int, batch: int) -> dict:
    engine = create_engine(url)
    stream = generated_stream(events)
    settings = domain.Settings()
    durations = []
    started = time.perf_counter()
    with Session(engine) as session:
        for offset in range(0, len(stream), batch):
            began = time.perf_counter()
            ingest.ingest(session, stream[offset : offset + batch], settings, "bench.ingest")
            session.commit()
            durations.append(time.perf_counter() - began)
        total = time.perf_counter() - started
        counted = session.execute(text("SELECT sum(orders), sum(checkouts) FROM windows")).one()
    engine.dispose()
    result = {
        "scenario": "ingest",
        "events": len(stream),
        "batch": batch,
        "events_per_second": round(len(stream) / total),
        "orders_counted": int(counted[0] or 0),
        "checkouts_counted": int(counted[1] or 0),
        **_percentiles(durations),
    }
    print(
        f"ingest: {result['events']} events in batches of {batch}: "
        f"{result['events_per_second']} events/s; per batch p50 {result['p50']} ms "
        f"p95 {result['p95']} ms p99 {result['p99']} ms"
    )
    return result


def fill_history(url: str, days: int, orders_per_day: int, products_per_window: int) -> float:
    """Writes the aggregates of ``days`` of history with SQL; returns seconds taken."""
    engine = create_engine(url)
    per_window = orders_per_day / 288
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE windows, late_tally, window_products, window_countries, products, "
                "orders, anomalies, handled_events, outbox"
            )
        )
        # A day's curve: busy evenings, quiet nights; AOV about 25 EUR, 1.6 units an order.
        connection.execute(
            text(
                """
                INSERT INTO windows (start, currency, orders, units, gross, refunds,
                                     checkouts, closed_at, revision)
                SELECT slot, 'EUR', n, (n * 1.6)::int, n * 2500, n * 40, (n * 1.3)::int,
                       now(), 0
                  FROM (SELECT slot,
                               greatest(0, round(:per_window * (0.3 + 1.4 * (1 + sin(
                                 extract(epoch FROM slot) / 86400 * 2 * pi())) / 2)
                                 * (0.8 + 0.4 * random())))::int AS n
                          FROM generate_series(:start, :end, interval '5 minutes') AS slot)
                       AS curve
                """
            ),
            {"start": START, "end": START + timedelta(days=days), "per_window": per_window},
        )
        connection.execute(
            text(
                """
                INSERT INTO window_products (start, currency, product_id, units, revenue)
                SELECT w.start, 'EUR', p.id, 1 + (random() * 3)::int, 1000 + (random() * 3000)::int
                  FROM windows AS w
                 CROSS JOIN LATERAL (
                   SELECT md5((random() * 20000)::int::text)::uuid AS id
                     FROM generate_series(1, :products)) AS p
                ON CONFLICT DO NOTHING
                """
            ),
            {"products": products_per_window},
        )
        connection.execute(
            text(
                """
                INSERT INTO window_countries (start, currency, country, orders, revenue)
                SELECT w.start, 'EUR', c.code, w.orders / 20, w.gross / 20
                  FROM windows AS w
                 CROSS JOIN (SELECT chr(65 + i / 5) || chr(65 + i % 5) AS code
                               FROM generate_series(0, 19) AS i) AS c
                """
            )
        )
        connection.execute(text("ANALYZE windows, window_products, window_countries"))
    engine.dispose()
    return time.perf_counter() - started


def bench_queries(url: str, days: int, queries: int) -> list[dict]:
    engine = create_engine(url, pool_size=1)
    rng = random.Random(5)
    asks = {
        "sales 90d at 1d": lambda s, span: reports.sales(s, span),
        "sales 90d at 1h": lambda s, span: reports.sales(s, span),
        "sales 30d at 5m": lambda s, span: reports.sales(s, span),
        "top products 7d": lambda s, span: reports.top_products(s, span, 10),
        "top products 90d": lambda s, span: reports.top_products(s, span, 10),
        "regions 90d": lambda s, span: reports.regions(s, span),
        "peak hours 90d": lambda s, span: reports.peak_hours(s, span),
    }
    spans = {
        "sales 90d at 1d": (days, "1d"),
        "sales 90d at 1h": (days, "1h"),
        "sales 30d at 5m": (min(days, 30), "5m"),
        "top products 7d": (7, "5m"),
        "top products 90d": (days, "5m"),
        "regions 90d": (days, "5m"),
        "peak hours 90d": (days, "1h"),
    }
    results = []
    with Session(engine) as session:
        for name, ask in asks.items():
            length, granularity = spans[name]
            durations = []
            for _ in range(queries):
                shift = timedelta(minutes=5 * rng.randrange(0, max(1, (days - length) * 288)))
                begin = START + shift
                span = domain.parse_range(
                    begin.isoformat(),
                    (begin + timedelta(days=length)).isoformat(),
                    granularity,
                    "EUR",
                    series=name.startswith("sales"),
                )
                started = time.perf_counter()
                ask(session, span)
                durations.append(time.perf_counter() - started)
                session.rollback()
            result = {"scenario": name, "queries": queries, **_percentiles(durations)}
            print(
                f"{name:>18}: p50 {result['p50']} ms  p95 {result['p95']} ms  "
                f"p99 {result['p99']} ms"
            )
            results.append(result)
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--orders-per-day", type=int, default=100_000)
    parser.add_argument("--products-per-window", type=int, default=200)
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    url = (
        make_url(database_url("analytics"))
        .set(database="bookstore_bench_analytics")
        .render_as_string(hide_password=False)
    )
    databases.prepare("analytics", url, recreate=True)
    ingested = bench_ingest(url, args.events, args.batch)
    seconds = fill_history(url, args.days, args.orders_per_day, args.products_per_window)
    print(
        f"history: {args.days} days at {args.orders_per_day} orders/day written in {seconds:.0f}s"
    )
    queried = bench_queries(url, args.days, args.queries)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%MZ")
    path = RESULTS / f"analytics-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "when": stamp,
                "arguments": vars(args),
                # The machine is shared: what else ran colours every figure.
                "load_average_1m": round(os.getloadavg()[0], 1),
                "ingest": ingested,
                "queries": queried,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
