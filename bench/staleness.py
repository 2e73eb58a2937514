"""Staleness benchmark: how long after an admin's PATCH through one gateway every worker of
another gateway serves the new version of the product.

Holds ``--connections`` keep-alive connections to the reading gateway (enough that every
worker process has some: the kernel spreads new connections across them), each polling
one product as fast as it answers. An admin PATCHes the product through the writing
gateway ``--patches`` times; for each PATCH it records, per connection, the time from
the PATCH's answer to the first read showing the new version, and prints the
distribution (p50/p95/p99/max over all connections and patches).

    .venv/bin/python -m bench.staleness --reader http://127.0.0.1:8080 \\
        --writer http://127.0.0.1:8081 --token "$ADMIN_TOKEN" [--product ID]

Writes ``bench/results/staleness-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Poller(threading.Thread):
    """One keep-alive connection reading the product; notes when it first sees each
    version."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = stop
        self.first_seen: dict[int, float] = {}
        self.session = requests.Session()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                version = self.session.get(self.url, timeout=10).json()["version"]
            except (requests.RequestException, ValueError, KeyError):
                continue
            self.first_seen.setdefault(version, time.monotonic())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reader", required=True, help="base URL of the caching gateway")
    parser.add_argument("--writer", required=True, help="base URL of the gateway to PATCH")
    parser.add_argument("--token", required=True, help="an admin access token")
    parser.add_argument("--product", help="product id (default: the first listed)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--patches", type=int, default=20)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    api = f"{args.writer}/api/v1"
    product = (
        args.product or requests.get(f"{api}/products?limit=1", timeout=10).json()["items"][0]["id"]
    )
    url = f"{args.reader}/api/v1/products/{product}"
    stop = threading.Event()
    pollers = [Poller(url, stop) for _ in range(args.connections)]
    for poller in pollers:
        poller.start()
    time.sleep(1)  # every connection open and reading before the first write
    delays: list[float] = []
    unseen = 0
    headers = {
        "Authorization": f"Bearer {args.token}",
        "Content-Type": "application/merge-patch+json",
    }
    for number in range(args.patches):
        patched = requests.patch(
            f"{api}/products/{product}",
            json={"description": f"staleness probe {number} {time.time()}"},
            headers=headers,
            timeout=10,
        )
        patched.raise_for_status()
        written_at = time.monotonic()
        version = patched.json()["version"]
        deadline = written_at + 10
        while time.monotonic() < deadline and not all(
            version in poller.first_seen for poller in pollers
        ):
            time.sleep(0.005)
        for poller in pollers:
            seen = poller.first_seen.get(version)
            if seen is None:
                unseen += 1
            else:
                delays.append(max(0.0, seen - written_at) * 1000)
        time.sleep(0.2)
    stop.set()
    summary = {
        "p50_ms": percentile(delays, 0.50),
        "p95_ms": percentile(delays, 0.95),
        "p99_ms": percentile(delays, 0.99),
        "max_ms": max(delays),
        "observations": len(delays),
        "never_seen_within_10s": unseen,
    }
    print(
        f"{len(delays)} observations ({args.connections} connections x {args.patches} PATCHes): "
        f"p50 {summary['p50_ms']:.1f} ms, p95 {summary['p95_ms']:.1f} ms, "
        f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms, "
        f"{unseen} never seen"
    )
    started = datetime.now(UTC)
    output = args.output or RESULTS_DIR / f"staleness-{started:%Y%m%dT%H%MZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {**vars(args), "token": "<redacted>", "output": str(output)}
    output.write_text(
        json.dumps(
            {
                "benchmark": "staleness",
                "started_at": started.isoformat(),
                "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
                "settings": settings,
                "summary": summary,
                "delays_ms": delays,
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
