"""Checkout benchmark: orders per second and their latency, through the gateway.

Each worker is a customer of its own (registered, logged in, with an address, set up
before measuring). A measured ``checkout`` is what a shopper does: put a book in the cart
(``PUT /cart/items/{id}``) and check out (``POST /orders`` with a fresh Idempotency-Key
and the mock provider's approving test card): stock reserved, payment authorized, stock
committed, order PAID. ``add_to_cart`` measures the cart step alone. Books come from a
pool of sampled products whose stock the benchmark raises first, so no checkout fails for
want of stock. Failed calls are errors, kept out of the latencies.

Run it with the platform up, limits raised (every worker shares one address)::

    GATEWAY_RATE_LIMITS=default=1000000/1s,credentials=1000000/1s bin/run
    .venv/bin/python -m bench.checkout [--duration 15] [--concurrency 8]

It logs in as the administrator with ``BOOKSTORE_ADMIN_PASSWORD`` (from ``.env.local``,
which bin/run writes) to set the stock.

It also says what one order costs the platform (bench/work.py): RPC calls, commits,
events published and consumed, CPU milliseconds per process. For that each service must
serve its metrics on a port of its own; start the platform with
``eval "$(.venv/bin/python -m bench.checkout --print-env)"`` in the environment, or pass
``--no-count``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from sqlalchemy import create_engine, text

from bench.catalog import (
    HTTP_TIMEOUT_S,
    REPO_ROOT,
    RESULTS_DIR,
    WARMUP_S,
    Call,
    ClientFactory,
    ScenarioFailed,
    ScenarioResult,
    check_ready,
    collect_ids,
    format_table,
    git_commit,
    run_scenario,
    write_report,
)
from bench.work import WorkMeter, net_of_idle, per_unit
from common.config import SERVICE_PACKAGES, database_url
from ops.instance import use_checkout_environment

SCENARIOS = ("add_to_cart", "checkout")
POOL_SIZE = 50
POOL_STOCK = 1_000_000
PASSWORD = "benchmark shopper password"  # noqa: S105 - throw-away bench accounts
SETUP_ATTEMPTS = 5
SETUP_TURNS = threading.Lock()
#: Where each service serves its metrics while benchmarked (``--print-env``): from 9461
#: on, or from ``BENCH_METRICS_BASE_PORT`` (a second platform on the same machine).
METRICS_BASE_PORT = int(os.environ.get("BENCH_METRICS_BASE_PORT") or 9461)
METRICS_PORTS = {
    service: METRICS_BASE_PORT + number for number, service in enumerate(SERVICE_PACKAGES)
}


def fail(message: str) -> SystemExit:
    return SystemExit(f"bench.checkout: {message}")


def admin_password() -> str:
    password = os.environ.get("BOOKSTORE_ADMIN_PASSWORD")
    env_file = Path(__file__).resolve().parent.parent / ".env.local"
    if password is None and env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("BOOKSTORE_ADMIN_PASSWORD="):
                password = line.split("=", 1)[1].strip()
    if not password:
        raise fail("set BOOKSTORE_ADMIN_PASSWORD (bin/run writes it to .env.local)")
    return password


def log_in(session: requests.Session, api: str, email: str, password: str) -> str:
    for _ in range(SETUP_ATTEMPTS):
        response = session.post(
            f"{api}/auth/login",
            json={"email": email, "password": password},
            timeout=HTTP_TIMEOUT_S,
        )
        if response.status_code < 500:
            break
    if response.status_code != 200 or "access_token" not in response.json():
        raise fail(f"could not log in as {email}: {response.status_code} {response.text[:200]}")
    return response.json()["access_token"]


def stock_pool(api: str, admin_email: str) -> list[str]:
    """Samples products and gives each plenty of stock."""
    with requests.Session() as session:
        product_ids = collect_ids(session, f"{api}/products", POOL_SIZE)
        if not product_ids:
            raise fail("the catalog is empty; bin/run seeds it")
        token = log_in(session, api, admin_email, admin_password())
        for product_id in product_ids:
            response = session.put(
                f"{api}/products/{product_id}/stock",
                json={"on_hand": POOL_STOCK},
                headers={"Authorization": f"Bearer {token}"},
                timeout=HTTP_TIMEOUT_S,
            )
            if response.status_code != 200:
                raise fail(f"could not set stock: {response.status_code} {response.text[:200]}")
    return product_ids


@contextmanager
def shopper(api: str) -> Iterator[tuple[requests.Session, dict[str, str], str]]:
    """A new customer with an address: (keep-alive session, auth headers, address id)."""
    with requests.Session() as session:
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        # Registering and logging in hash a password (argon2): all workers at once on a
        # busy machine outlast the gateway's deadline, so they take turns (registering
        # again after a timeout is harmless).
        with SETUP_TURNS:
            for _ in range(SETUP_ATTEMPTS):
                registered = session.post(
                    f"{api}/auth/register",
                    json={"email": email, "password": PASSWORD, "accept_terms": True},
                    timeout=HTTP_TIMEOUT_S,
                )
                if registered.status_code < 500:
                    break
            if registered.status_code != 202:
                raise ScenarioFailed(f"register: {registered.status_code} {registered.text[:200]}")
            headers = {"Authorization": f"Bearer {log_in(session, api, email, PASSWORD)}"}
        address = session.post(
            f"{api}/me/addresses",
            json={
                "recipient": "Bench",
                "line1": "1 Road",
                "city": "London",
                "postal_code": "N1",
                "country": "GB",
            },
            headers=headers,
            timeout=HTTP_TIMEOUT_S,
        )
        if address.status_code != 201:
            raise ScenarioFailed(f"address: {address.status_code} {address.text[:200]}")
        yield session, headers, address.json()["id"]


def build_scenarios(
    api: str, pool: list[str], calls: Callable[[], object]
) -> dict[str, ClientFactory]:
    """``calls`` is called once per scenario call (warm-up included: what is metered)."""

    def add(session: requests.Session, headers: dict[str, str]) -> bool:
        response = session.put(
            f"{api}/cart/items/{random.choice(pool)}",
            json={"quantity": 1},
            headers=headers,
            timeout=HTTP_TIMEOUT_S,
        )
        return response.status_code == 200

    @contextmanager
    def add_to_cart() -> Iterator[Call]:
        with shopper(api) as (session, headers, _):

            def call() -> bool:
                calls()
                return add(session, headers)

            yield call

    @contextmanager
    def checkout() -> Iterator[Call]:
        with shopper(api) as (session, headers, address_id):

            def call() -> bool:
                calls()
                if not add(session, headers):
                    return False
                response = session.post(
                    f"{api}/orders",
                    json={"shipping_address_id": address_id, "payment_method": "pm_card_visa"},
                    headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                    timeout=HTTP_TIMEOUT_S,
                )
                return response.status_code == 201 and response.json()["status"] == "PAID"

            yield call

    return {"add_to_cart": add_to_cart, "checkout": checkout}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.checkout", description="Orders per second through the gateway."
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8080", help="the gateway")
    parser.add_argument("--admin-email", default="admin@example.com")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="subset of %(default)s")
    parser.add_argument("--output", type=Path, help="JSON file (default: bench/results/)")
    parser.add_argument(
        "--no-count", dest="count", action="store_false", help="skip the per-order costs"
    )
    parser.add_argument(
        "--platform-dir",
        type=Path,
        default=REPO_ROOT,
        help="where the platform's processes were started (default: this checkout)",
    )
    parser.add_argument(
        "--print-env",
        action="store_true",
        help="print the exports that give each service its metrics port, and exit",
    )
    parser.add_argument("--note", default="", help="recorded with the results")
    parser.add_argument(
        "--idle",
        type=float,
        default=15.0,
        help="seconds of no load measured first, to give costs net of background work",
    )
    args = parser.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if set(args.scenarios) - set(SCENARIOS) or not args.scenarios:
        parser.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    if args.duration <= 0 or args.concurrency < 1:
        parser.error("--duration must be positive and --concurrency at least 1")
    return args


def metrics_env() -> str:
    return "\n".join(
        f"export {service.upper()}_METRICS_PORT={port}" for service, port in METRICS_PORTS.items()
    )


def amqp_vhost() -> str:
    uri = os.environ.get("AMQP_URI", "pyamqp://guest:guest@127.0.0.1:5672//")
    return unquote(urlsplit(uri).path[1:]) or "/"


def count_orders() -> int:
    engine = create_engine(database_url("order"), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM orders"))
    finally:
        engine.dispose()


def metered_run(
    meter: WorkMeter,
    factory: ClientFactory,
    name: str,
    args: argparse.Namespace,
    idle: dict[str, Any] | None,
) -> tuple[ScenarioResult, dict[str, Any]]:
    """Runs one scenario between two snapshots of a quiet platform; returns its result
    and what it cost (totals, and per order or per cart change)."""
    snapshots: dict[str, Any] = {}

    def before() -> None:
        meter.settle()
        snapshots["orders"] = count_orders()
        snapshots["calls"] = next(call_counter)
        snapshots["before"] = meter.snapshot()

    result = run_scenario(factory, args.duration, args.concurrency, on_connected=before)
    meter.settle()
    after = meter.snapshot()
    totals = meter.difference(snapshots["before"], after)
    orders = count_orders() - snapshots["orders"]
    calls = next(call_counter) - snapshots["calls"] - 1
    units = max(orders if name == "checkout" else calls, 1)
    totals["orders_placed"], totals["calls"] = orders, calls
    costs = {"totals": totals, "per_unit": per_unit(totals, units)}
    if idle is not None:
        costs["per_unit_net_of_idle"] = per_unit(net_of_idle(totals, idle), units)
    return result, costs


def measure_idle(meter: WorkMeter, seconds: float) -> dict[str, Any]:
    """What the platform does with no load for ``seconds`` (timers, polls)."""
    meter.settle()
    before = meter.snapshot()
    time.sleep(seconds)
    meter.settle()
    return meter.difference(before, meter.snapshot())


call_counter = itertools.count()


def format_costs(costs: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, cost in costs.items():
        unit = cost.get("per_unit_net_of_idle", cost["per_unit"])
        net = " net of idle background" if "per_unit_net_of_idle" in cost else ""
        lines.append(
            f"{name}: per {'order' if name == 'checkout' else 'call'}{net} "
            f"({unit['units']} of them): "
            f"{unit['rpc_calls']:g} RPC calls, {unit['commits']:g} commits, "
            f"{unit['events_published']:g} events published, "
            f"{unit['events_consumed']:g} consumed, "
            f"{unit['cpu_ms_platform']:g} ms CPU ({unit['cpu_ms_with_shared']:g} with RabbitMQ "
            "and PostgreSQL's background, shared with the machine)"
        )
        for label, ms in sorted(unit["by"]["cpu_ms"].items(), key=lambda item: -item[1]):
            lines.append(f"    {ms:8.1f} ms  {label}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_env:
        print(metrics_env())
        return 0
    # The databases and vhost of the platform bin/run started from this checkout (its
    # .env.local instance), as the operator's tools find them.
    use_checkout_environment(os.environ)
    started_at = datetime.now(UTC)
    api = f"{args.base_url}/api/v1"
    with requests.Session() as session:
        check_ready(session, args.base_url)
    pool = stock_pool(api, args.admin_email)
    print(
        f"{len(pool)} books in the pool; {args.duration:g}s per scenario, "
        f"{args.concurrency} customers, {WARMUP_S:g}s warm-up.",
        flush=True,
    )
    factories = build_scenarios(api, pool, lambda: next(call_counter))
    meter = (
        WorkMeter(
            {service: database_url(service) for service in SERVICE_PACKAGES},
            METRICS_PORTS,
            args.platform_dir,
            amqp_vhost(),
        )
        if args.count
        else None
    )
    results: dict[str, ScenarioResult] = {}
    costs: dict[str, dict[str, Any]] = {}
    idle = None
    if meter is not None and args.idle > 0:
        print(f"  idle platform, {args.idle:g}s...", flush=True)
        idle = measure_idle(meter, args.idle)
    try:
        for name in args.scenarios:
            print(f"  {name}...", flush=True)
            if meter is None:
                results[name] = run_scenario(factories[name], args.duration, args.concurrency)
            else:
                results[name], costs[name] = metered_run(meter, factories[name], name, args, idle)
    finally:
        if meter is not None:
            meter.close()
    print()
    print(format_table(results))
    if costs:
        print()
        print(format_costs(costs))
    document: dict[str, Any] = {
        "benchmark": "checkout",
        "started_at": started_at.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "note": args.note,
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "settings": {
            "base_url": args.base_url,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "warmup_s": WARMUP_S,
            "books_in_pool": len(pool),
        },
        "results": {name: vars(result) for name, result in results.items()},
        "costs": costs,
        "idle": idle,
    }
    output = args.output or RESULTS_DIR / f"checkout-{started_at:%Y%m%dT%H%MZ}.json"
    path = write_report(document, output, started_at)
    print(f"\nWrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
