"""Catalog read benchmark: latency and throughput of the busiest read paths.

Measures four scenarios against a running platform, one after the other, each for
``--duration`` seconds with ``--concurrency`` worker threads:

- ``get_product``: ``GET /api/v1/products/{id}`` through the gateway;
- ``list_page``: ``GET /api/v1/products?limit=20``, the first page of the catalog;
- ``filter_category``: the same page filtered by a random category;
- ``rpc_get_product``: ``catalog.get_product(id)`` as a bare nameko RPC call over
  RabbitMQ, bypassing the gateway, so that the gateway's overhead can be read off as
  p50(get_product) - p50(rpc_get_product).

Each worker keeps one connection for the whole scenario (a keep-alive ``requests.Session``,
or one started RPC proxy) and first runs a one-second warm-up that is not measured. Failed
calls are counted as errors and kept out of the latency figures. Prints a table and writes
the figures as JSON (by default to ``bench/results/catalog-<UTC time>.json``).

Run it with the platform up (``bin/run``)::

    .venv/bin/python -m bench.catalog [--duration 15] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

# nameko imports eventlet, which warns on import that it is deprecated: noise about a
# dependency of the platform, not something this benchmark can act on.
warnings.filterwarnings("ignore", message="\nEventlet is deprecated")
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DEFAULT_AMQP_URI = "pyamqp://guest:guest@127.0.0.1:5672//"
SCENARIOS = ("get_product", "list_page", "filter_category", "rpc_get_product")

WARMUP_S = 1.0
HTTP_TIMEOUT_S = 10.0
RPC_TIMEOUT_S = 10
PAGE_SIZE = 100
MAX_SAMPLED_IDS = 500

#: One measured call: True if it succeeded. May raise, which also counts as an error.
Call = Callable[[], bool]
#: Opens one worker's connection and gives its call; closes the connection on exit.
ClientFactory = Callable[[], AbstractContextManager[Call]]


@dataclass(frozen=True)
class Catalog:
    product_ids: list[str]
    category_ids: list[str]


@dataclass
class Window:
    """The measured window, in ``time.perf_counter()`` seconds, shared by all workers."""

    measure_from: float = 0.0
    measure_until: float = 0.0


@dataclass
class WorkerOutcome:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    finished_at: float = 0.0
    failure: BaseException | None = None


@dataclass(frozen=True)
class ScenarioResult:
    requests: int
    errors: int
    throughput_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class ScenarioFailed(Exception):
    """A worker could not open its connection, so the scenario has no figures."""


def fail(message: str) -> SystemExit:
    return SystemExit(f"bench.catalog: {message}")


# --- Preparation ---------------------------------------------------------------------------


def check_ready(session: requests.Session, base_url: str) -> None:
    url = f"{base_url}/ready"
    try:
        response = session.get(url, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as error:
        raise fail(
            f"{url} is not reachable ({type(error).__name__}); start the platform with bin/run"
        ) from None
    if response.status_code != 200:
        raise fail(
            f"{url} answered {response.status_code}, not 200; start the platform with bin/run "
            "and wait until it prints 'The bookstore is running'"
        )


def collect_ids(session: requests.Session, url: str, at_most: int) -> list[str]:
    """The ids of up to ``at_most`` items of a paged collection, following ``next_cursor``."""
    ids: list[str] = []
    cursor: str | None = None
    while len(ids) < at_most:
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if cursor:
            params["cursor"] = cursor
        response = session.get(url, params=params, timeout=HTTP_TIMEOUT_S)
        if response.status_code != 200:
            raise fail(f"GET {response.url} answered {response.status_code}: {response.text}")
        page = response.json()
        ids.extend(str(item["id"]) for item in page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return ids[:at_most]


def sample_catalog(base_url: str, scenarios: list[str]) -> Catalog:
    with requests.Session() as session:
        check_ready(session, base_url)
        products = collect_ids(session, f"{base_url}/api/v1/products", MAX_SAMPLED_IDS)
        categories = collect_ids(session, f"{base_url}/api/v1/categories", MAX_SAMPLED_IDS)
    if not products:
        raise fail("the catalog has no products; bin/run loads a demo catalog, is it running?")
    if not categories and "filter_category" in scenarios:
        raise fail("the catalog has no categories, so filter_category cannot run")
    return Catalog(product_ids=products, category_ids=categories)


def check_rpc(amqp_uri: str, product_id: str) -> None:
    """Fails early, with a clear message, if the catalog service is not reachable over AMQP."""
    try:
        with rpc_client(amqp_uri, [product_id]) as call:
            call()
    except Exception as error:
        raise fail(
            f"cannot call catalog.get_product over AMQP at {amqp_uri} ({error!r}); "
            "pass the platform's broker with --amqp-uri or AMQP_URI"
        ) from None


# --- Clients -------------------------------------------------------------------------------


@contextmanager
def http_client(url_for: Callable[[], str]) -> Iterator[Call]:
    """GETs ``url_for()`` over one keep-alive session; success is a 200."""
    with requests.Session() as session:

        def call() -> bool:
            return session.get(url_for(), timeout=HTTP_TIMEOUT_S).status_code == 200

        yield call


@contextmanager
def rpc_client(amqp_uri: str, product_ids: list[str]) -> Iterator[Call]:
    """Calls ``catalog.get_product`` through this worker's own started proxy."""
    rpc = CatalogRpc(amqp_uri)
    try:

        def call() -> bool:
            rpc.get_product(random.choice(product_ids))
            return True

        yield call
    finally:
        rpc.close()


class CatalogRpc:
    """One worker's standalone nameko proxy to the catalog service.

    A standalone proxy deadlocks when threads share it, and starting one (a connection and
    a reply queue) would dwarf the call itself, so each worker keeps one for the scenario.
    """

    def __init__(self, amqp_uri: str) -> None:
        self._amqp_uri = amqp_uri
        self._start()

    def get_product(self, product_id: str) -> Any:
        try:
            return self._cluster.catalog.get_product(product_id)
        except Exception:
            # After a timeout or a dropped connection the proxy cannot be trusted (a late
            # reply may still arrive), so the next call gets a fresh one, as the gateway's do.
            self.close()
            self._start()
            raise

    def close(self) -> None:
        # A proxy whose connection is already gone has nothing left to close.
        with contextlib.suppress(Exception):
            self._proxy.stop()

    def _start(self) -> None:
        self._proxy = ClusterRpcProxy({"AMQP_URI": self._amqp_uri}, timeout=RPC_TIMEOUT_S)
        self._cluster = self._proxy.start()


def build_scenarios(base_url: str, amqp_uri: str, catalog: Catalog) -> dict[str, ClientFactory]:
    api = f"{base_url}/api/v1"
    products, categories = catalog.product_ids, catalog.category_ids
    return {
        "get_product": lambda: http_client(lambda: f"{api}/products/{random.choice(products)}"),
        "list_page": lambda: http_client(lambda: f"{api}/products?limit=20"),
        "filter_category": lambda: http_client(
            lambda: f"{api}/products?limit=20&category={random.choice(categories)}"
        ),
        "rpc_get_product": lambda: rpc_client(amqp_uri, products),
    }


# --- Running -------------------------------------------------------------------------------


def run_scenario(
    factory: ClientFactory,
    duration: float,
    concurrency: int,
    on_connected: Callable[[], None] | None = None,
) -> ScenarioResult:
    """Runs ``concurrency`` workers: connect, warm up, then call for ``duration`` seconds.
    ``on_connected`` runs once every worker has connected, before the warm-up."""
    window = Window()

    def open_window() -> None:
        # Runs once every worker has connected, so connection setup is never measured.
        if on_connected is not None:
            on_connected()
        window.measure_from = time.perf_counter() + WARMUP_S
        window.measure_until = window.measure_from + duration

    barrier = threading.Barrier(concurrency, action=open_window)
    outcomes = [WorkerOutcome() for _ in range(concurrency)]
    threads = [
        threading.Thread(
            target=_worker,
            args=(factory, barrier, window, outcome),
            name=f"bench-worker-{number}",
            daemon=True,
        )
        for number, outcome in enumerate(outcomes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = [outcome.failure for outcome in outcomes if outcome.failure is not None]
    if failures:
        raise ScenarioFailed(f"{len(failures)} worker(s) failed, first: {failures[0]!r}")
    elapsed = max(outcome.finished_at for outcome in outcomes) - window.measure_from
    latencies = sorted(latency for outcome in outcomes for latency in outcome.latencies_s)
    return summarize(latencies, sum(outcome.errors for outcome in outcomes), elapsed)


def _worker(
    factory: ClientFactory, barrier: threading.Barrier, window: Window, outcome: WorkerOutcome
) -> None:
    try:
        with factory() as call:
            barrier.wait()
            _drive(call, window, outcome)
    except threading.BrokenBarrierError:
        pass  # another worker failed to connect and reports why
    except Exception as error:
        outcome.failure = error
        barrier.abort()


def _drive(call: Call, window: Window, outcome: WorkerOutcome) -> None:
    while (started := time.perf_counter()) < window.measure_until:
        try:
            succeeded = call()
        except Exception:
            succeeded = False
        finished = time.perf_counter()
        if started < window.measure_from:
            continue  # warm-up
        if succeeded:
            outcome.latencies_s.append(finished - started)
        else:
            outcome.errors += 1
    outcome.finished_at = time.perf_counter()


def percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile of a non-empty, sorted list."""
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(latencies_s: list[float], errors: int, elapsed_s: float) -> ScenarioResult:
    def ms(value: float) -> float:
        return round(value * 1000, 2)

    def percentile_ms(percent: float) -> float | None:
        return ms(percentile(latencies_s, percent)) if latencies_s else None

    return ScenarioResult(
        requests=len(latencies_s),
        errors=errors,
        throughput_rps=round(len(latencies_s) / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        p50_ms=percentile_ms(50),
        p95_ms=percentile_ms(95),
        p99_ms=percentile_ms(99),
        max_ms=ms(latencies_s[-1]) if latencies_s else None,
    )


# --- Reporting -----------------------------------------------------------------------------

TABLE_COLUMNS = ("req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors")


def format_table(results: dict[str, ScenarioResult]) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [f"{'scenario':<17}" + "".join(f"{column:>10}" for column in TABLE_COLUMNS)]
    for name, result in results.items():
        cells = [
            cell(result.throughput_rps),
            cell(result.p50_ms),
            cell(result.p95_ms),
            cell(result.p99_ms),
            cell(result.max_ms),
            str(result.errors),
        ]
        lines.append(f"{name:<17}" + "".join(f"{text:>10}" for text in cells))
    return "\n".join(lines)


def gateway_overhead_ms(results: dict[str, ScenarioResult]) -> float | None:
    through_gateway = results.get("get_product")
    bare = results.get("rpc_get_product")
    if through_gateway is None or bare is None:
        return None
    if through_gateway.p50_ms is None or bare.p50_ms is None:
        return None
    return round(through_gateway.p50_ms - bare.p50_ms, 2)


def git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    completed = subprocess.run(  # noqa: S603 - fixed arguments
        [git, "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = completed.stdout.strip()
    return commit if completed.returncode == 0 and commit else None


def report(
    args: argparse.Namespace,
    started_at: datetime,
    catalog: Catalog,
    results: dict[str, ScenarioResult],
) -> dict[str, Any]:
    return {
        "benchmark": "catalog",
        "started_at": started_at.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "base_url": args.base_url,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "warmup_s": WARMUP_S,
            "products_sampled": len(catalog.product_ids),
            "categories_sampled": len(catalog.category_ids),
        },
        "results": {name: vars(result) for name, result in results.items()},
    }


def write_report(document: dict[str, Any], output: Path | None, started_at: datetime) -> Path:
    path = output or RESULTS_DIR / f"catalog-{started_at:%Y%m%dT%H%MZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --- Command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.catalog",
        description="Latency and throughput of catalog reads, through the gateway and bare RPC.",
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8080", help="the gateway")
    parser.add_argument(
        "--amqp-uri",
        default=os.environ.get("AMQP_URI", DEFAULT_AMQP_URI),
        help="the broker, for rpc_get_product (default: $AMQP_URI or %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of: %(default)s",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="the JSON file to write (default: bench/results/catalog-<UTC time>.json)",
    )
    args = parser.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown or not args.scenarios:
        parser.error(f"--scenarios: choose from {', '.join(SCENARIOS)} (got {unknown or 'none'})")
    if args.duration <= 0 or args.concurrency < 1:
        parser.error("--duration must be positive and --concurrency at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    catalog = sample_catalog(args.base_url, args.scenarios)
    if "rpc_get_product" in args.scenarios:
        check_rpc(args.amqp_uri, catalog.product_ids[0])
    print(
        f"Sampled {len(catalog.product_ids)} products and {len(catalog.category_ids)} "
        f"categories; {args.duration:g}s per scenario, {args.concurrency} workers, "
        f"{WARMUP_S:g}s warm-up.",
        flush=True,
    )
    factories = build_scenarios(args.base_url, args.amqp_uri, catalog)
    results: dict[str, ScenarioResult] = {}
    for name in args.scenarios:
        print(f"  {name}...", flush=True)
        try:
            results[name] = run_scenario(factories[name], args.duration, args.concurrency)
        except ScenarioFailed as error:
            raise fail(f"{name}: {error}") from None
    print()
    print(format_table(results))
    overhead = gateway_overhead_ms(results)
    if overhead is not None:
        print(f"\ngateway overhead (p50 get_product - p50 rpc_get_product): {overhead:.2f} ms")
    path = write_report(report(args, started_at, catalog, results), args.output, started_at)
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
