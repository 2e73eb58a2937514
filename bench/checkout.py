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
"""

from __future__ import annotations

import argparse
import os
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.catalog import (
    HTTP_TIMEOUT_S,
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

SCENARIOS = ("add_to_cart", "checkout")
POOL_SIZE = 50
POOL_STOCK = 1_000_000
PASSWORD = "benchmark shopper password"  # noqa: S105 - throw-away bench accounts


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
    response = session.post(
        f"{api}/auth/login", json={"email": email, "password": password}, timeout=HTTP_TIMEOUT_S
    )
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
        registered = session.post(
            f"{api}/auth/register",
            json={"email": email, "password": PASSWORD, "accept_terms": True},
            timeout=HTTP_TIMEOUT_S,
        )
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


def build_scenarios(api: str, pool: list[str]) -> dict[str, ClientFactory]:
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
            yield lambda: add(session, headers)

    @contextmanager
    def checkout() -> Iterator[Call]:
        with shopper(api) as (session, headers, address_id):

            def call() -> bool:
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
    args = parser.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if set(args.scenarios) - set(SCENARIOS) or not args.scenarios:
        parser.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    if args.duration <= 0 or args.concurrency < 1:
        parser.error("--duration must be positive and --concurrency at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    factories = build_scenarios(api, pool)
    results: dict[str, ScenarioResult] = {}
    for name in args.scenarios:
        print(f"  {name}...", flush=True)
        results[name] = run_scenario(factories[name], args.duration, args.concurrency)
    print()
    print(format_table(results))
    document: dict[str, Any] = {
        "benchmark": "checkout",
        "started_at": started_at.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": {"cpus": os.cpu_count()},
        "settings": {
            "base_url": args.base_url,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "warmup_s": WARMUP_S,
            "books_in_pool": len(pool),
        },
        "results": {name: vars(result) for name, result in results.items()},
    }
    output = args.output or RESULTS_DIR / f"checkout-{started_at:%Y%m%dT%H%MZ}.json"
    path = write_report(document, output, started_at)
    print(f"\nWrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
