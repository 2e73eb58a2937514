"""Staleness benchmark: how long after an admin's PATCH through one gateway every worker of
another gateway serves the new version of the product.

Holds ``--connections`` keep-alive connections to the reading gateway (enough that every
worker process has some: the kernel spreads new connections across them), each polling
one product as fast as it answers. An admin PATCHes the product through the writing
gateway ``--patches`` times; for each PATCH it records, per connection, the time from
the PATCH's answer to the first read showing the new version, and prints the
distribution (p50/p95/p99/max over all connections and patches).

With ``--amqp-uri`` it also binds a queue of its own to the catalog's events and notes
when each version's ``product.updated`` arrives, splitting the delay into the event's
part (commit, outbox relay, broker) and the rest (the reading worker's invalidation,
its refill RPC and the poller's own request); each poller also notes when the request
that first showed a version was sent, so a request already under way is told apart.

    .venv/bin/python -m bench.staleness --reader http://127.0.0.1:8080 \\
        --writer http://127.0.0.1:8081 --token "$ADMIN_TOKEN" [--product ID] \\
        [--amqp-uri "$AMQP_URI"]

Writes ``bench/results/staleness-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from kombu import Connection, Exchange, Queue

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
        #: Every read's duration: the floor under any staleness this poller can see.
        self.read_ms: list[float] = []
        self.session = requests.Session()

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                version = self.session.get(self.url, timeout=10).json()["version"]
            except (requests.RequestException, ValueError, KeyError):
                continue
            answered = time.monotonic()
            self.read_ms.append((answered - sent) * 1000)
            self.first_seen.setdefault(version, answered)


class EventObserver(threading.Thread):
    """A queue of its own on the catalog's events: when each product version's event
    reached the broker's consumers."""

    def __init__(self, amqp_uri: str, product_id: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.amqp_uri, self.product_id, self.stop = amqp_uri, product_id, stop
        self.arrived: dict[int, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        exchange = Exchange("catalog.events", "topic", durable=True)
        queue = Queue("", exchange, "product.updated", exclusive=True, auto_delete=True)
        with (
            Connection(self.amqp_uri) as connection,
            connection.Consumer(queue, callbacks=[self._on_event], no_ack=True),
        ):
            self.ready.set()
            while not self.stop.is_set():
                with contextlib.suppress(TimeoutError, OSError):
                    connection.drain_events(timeout=0.2)

    def _on_event(self, body: Any, message: Any) -> None:
        envelope = json.loads(body) if isinstance(body, str | bytes) else body
        data = envelope.get("data") or {}
        if data.get("id") == self.product_id and isinstance(data.get("version"), int):
            self.arrived.setdefault(data["version"], time.monotonic())


def distribution(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": percentile(values, 0.50),
        "p95_ms": percentile(values, 0.95),
        "p99_ms": percentile(values, 0.99),
        "max_ms": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reader", required=True, help="base URL of the caching gateway")
    parser.add_argument("--writer", required=True, help="base URL of the gateway to PATCH")
    parser.add_argument("--token", required=True, help="an admin access token")
    parser.add_argument("--product", help="product id (default: the first listed)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--patches", type=int, default=20)
    parser.add_argument(
        "--amqp-uri", help="the platform's broker: also time the event itself (see above)"
    )
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
    observer = None
    if args.amqp_uri:
        observer = EventObserver(args.amqp_uri, product, stop)
        observer.start()
        observer.ready.wait(10)
    time.sleep(1)  # every connection open and reading before the first write
    delays: list[float] = []
    #: The PATCH's answer to the event's arrival, and the event's arrival to each
    #: poller's first read of the new version.
    event_delays: list[float] = []
    after_event: list[float] = []
    #: Per PATCH, on this machine's monotonic clock (other processes' logs can be lined up).
    timeline: list[dict[str, Any]] = []
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
        timeline.append(
            {
                "version": version,
                "answered_at": written_at,
                "event_at": observer.arrived.get(version) if observer else None,
                "first_seen_at": [poller.first_seen.get(version) for poller in pollers],
            }
        )
        if observer is not None and version in observer.arrived:
            arrived = observer.arrived[version]
            event_delays.append((arrived - written_at) * 1000)
            after_event += [
                (poller.first_seen[version] - arrived) * 1000
                for poller in pollers
                if version in poller.first_seen
            ]
        time.sleep(0.2)
    stop.set()
    summary = {
        **distribution(delays),
        "observations": len(delays),
        "never_seen_within_10s": unseen,
    }
    summary["read"] = distribution([ms for poller in pollers for ms in poller.read_ms])
    if observer is not None:
        summary["event_after_answer"] = distribution(event_delays)
        summary["seen_after_event"] = distribution(after_event)
    print(
        f"{len(delays)} observations ({args.connections} connections x {args.patches} PATCHes): "
        f"p50 {summary['p50_ms']:.1f} ms, p95 {summary['p95_ms']:.1f} ms, "
        f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms, "
        f"{unseen} never seen"
    )
    for part in ("read", "event_after_answer", "seen_after_event"):
        if part in summary:
            figures = summary[part]
            print(
                f"  {part.replace('_', ' ')}: p50 {figures['p50_ms']:.1f} ms, "
                f"p95 {figures['p95_ms']:.1f} ms, max {figures['max_ms']:.1f} ms"
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
                "timeline": timeline,
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
