"""PostgreSQL connections of one platform instance: at rest, under load, after.

Starts a platform of its own (the test harness: every service and a gateway on databases
``bookstore_connbench_*``), samples ``pg_stat_activity`` for those databases every 100 ms
while ``--concurrency`` callers per service keep every service's workers busy with
``ping`` (an RPC whose worker runs a query: the most connections a service's workers can
want at once) and as many again read the catalog and search through the gateway, and
prints, per database, the connections open before the load, the peak during it and what
stays open after. ``--pgbouncer HOST:PORT`` sends the services' connections
through a PgBouncer (transaction pooling) that forwards to this server: the figures are
then PgBouncer's server connections, what PostgreSQL pays for.

    .venv/bin/python -m bench.connections [--duration 15] [--concurrency 12]
    .venv/bin/python -m bench.connections --pgbouncer 127.0.0.1:6432

Writes JSON under bench/results/. The figures are the contract of the connection budget
in README.md ("PostgreSQL connections") and docs/decisions/0096.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.catalog import RESULTS_DIR, git_commit, write_report
from common.config import SERVICE_PACKAGES
from tests import harness

NAMESPACE = "connbench"
SAMPLE_EVERY_S = 0.1


def _counts(engine: Any, prefix: str) -> dict[str, int]:
    query = text(
        "SELECT datname, count(*) FROM pg_stat_activity WHERE datname LIKE :prefix GROUP BY 1"
    )
    with engine.connect() as connection:
        rows = connection.execute(query, {"prefix": f"{prefix}%"}).all()
    return {name.removeprefix(prefix): count for name, count in rows}


class Sampler(threading.Thread):
    """Peak connections per database while it runs."""

    def __init__(self, engine: Any, prefix: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.prefix = engine, prefix
        self.peak: dict[str, int] = defaultdict(int)
        self.peak_total = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            counts = _counts(self.engine, self.prefix)
            for name, count in counts.items():
                self.peak[name] = max(self.peak[name], count)
            self.peak_total = max(self.peak_total, sum(counts.values()))
            time.sleep(SAMPLE_EVERY_S)


def _through(url: str, pgbouncer: str) -> str:
    host, port = pgbouncer.rsplit(":", 1)
    return make_url(url).set(host=host, port=int(port)).render_as_string(hide_password=False)


def _load(platform: harness.Platform, duration: float, concurrency: int) -> dict[str, int]:
    """Calls per second cannot be compared on a shared machine; calls and errors can."""
    counts: dict[str, int] = defaultdict(int)
    deadline = time.monotonic() + duration

    def ping(service: str) -> None:
        with ClusterRpcProxy({"AMQP_URI": platform.amqp_uri}, timeout=30) as rpc:
            while time.monotonic() < deadline:
                try:
                    getattr(rpc, service).ping()
                    counts[f"{service}.ping"] += 1
                except Exception:
                    counts["errors"] += 1

    def read(path: str) -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                try:
                    session.get(f"{platform.base_url}/api/v1{path}", timeout=30).raise_for_status()
                    counts[path] += 1
                except requests.RequestException:
                    counts["errors"] += 1

    callers = [
        threading.Thread(target=ping, args=(service,))
        for service in SERVICE_PACKAGES
        for _ in range(concurrency)
    ]
    callers += [
        threading.Thread(target=read, args=(path,))
        for path in ("/products?limit=20", "/search?q=history")
        for _ in range(concurrency // 2)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    return dict(counts)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    extra_env = {"GATEWAY_RATE_LIMITS": "default=1000000/1s,credentials=1000000/1s"}
    if args.pgbouncer:
        extra_env |= {
            f"{service.upper()}_DATABASE_URL": _through(
                harness.test_database_url(service, NAMESPACE), args.pgbouncer
            )
            for service in SERVICE_PACKAGES
        }
    platform = harness.start_platform(NAMESPACE, extra_env)
    monitor = create_engine(harness.test_database_url("catalog", NAMESPACE))
    prefix = f"bookstore_{NAMESPACE}_"
    try:
        from svc_catalog.seed import seed_catalog

        with Session(create_engine(platform.database_urls["catalog"])) as session:
            seed_catalog(session, books=args.books, seed=1, with_events=True)
        time.sleep(args.settle)  # let the services finish starting, the events settle
        # The monitor's own connection is in the catalog's count: take it out.
        at_rest = _counts(monitor, prefix)
        at_rest["catalog"] -= 1
        sampler = Sampler(monitor, prefix)
        sampler.start()
        calls = _load(platform, args.duration, args.concurrency)
        sampler.done.set()
        sampler.join()
        time.sleep(1)
        after = _counts(monitor, prefix)
        after["catalog"] -= 1
        peak = {name: count - (name == "catalog") for name, count in sampler.peak.items()}
        return {
            "at_rest": at_rest,
            "peak": peak,
            "after": after,
            "totals": {
                "at_rest": sum(at_rest.values()),
                "peak": sampler.peak_total - 1,
                "after": sum(after.values()),
            },
            "calls": calls,
        }
    finally:
        monitor.dispose()
        harness.stop_platform(platform)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connections", description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=12, help="callers per service")
    parser.add_argument("--books", type=int, default=500)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--pgbouncer", help="HOST:PORT of a PgBouncer in front of PostgreSQL")
    parser.add_argument("--label", default="", help="a word for the report (e.g. before)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    figures = measure(args)
    print(f"\n{'database':<10} {'at rest':>8} {'peak':>6} {'after':>6}")
    for name in sorted(set(figures["peak"]) | set(figures["at_rest"])):
        row = [figures[key].get(name, 0) for key in ("at_rest", "peak", "after")]
        print(f"{name:<10} {row[0]:>8} {row[1]:>6} {row[2]:>6}")
    totals = figures["totals"]
    print(f"{'total':<10} {totals['at_rest']:>8} {totals['peak']:>6} {totals['after']:>6}")
    print(f"calls: {figures['calls']}")
    document = {
        "benchmark": "connections",
        "label": args.label,
        "started_at": started_at.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "settings": {
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "pgbouncer": args.pgbouncer,
        },
        "results": figures,
    }
    output = args.output or RESULTS_DIR / f"connections-{started_at:%Y%m%dT%H%MZ}.json"
    print(f"\nWrote {write_report(document, output, started_at)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
