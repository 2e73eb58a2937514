"""Publishing outbox events to RabbitMQ: one broker confirm per event (the relay before
docs/decisions/0060) against a batch confirmed together (the relay now).

Needs only RabbitMQ; it works in a virtual host of its own, created and deleted here:

    .venv/bin/python -m bench.outbox_publish [--events 3000] [--batch 200]

Prints events per second and p50/p95/p99 of the time to publish one unit (one event
before, one batch now) and writes both to bench/results/outbox-publish-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from common.notices import silence_import_notices

silence_import_notices()

from kombu import Connection, Queue  # noqa: E402
from nameko.amqp.publish import Publisher  # noqa: E402
from nameko.events import get_event_exchange  # noqa: E402

from common.events import ConfirmingPublisher, make_envelope  # noqa: E402

VHOST = "bookstore-bench-outbox"
URI = f"pyamqp://guest:guest@127.0.0.1:5672/{VHOST}"
RESULTS = Path(__file__).parent / "results"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=False, capture_output=True)  # noqa: S603, S607


def _percentiles(seconds: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(seconds, n=100)
    return {f"p{p}": round(cuts[p - 1] * 1000, 2) for p in (50, 95, 99)}


def _scenario(name: str, events: int, durations: list[float], total: float) -> dict:
    result = {"scenario": name, "events": events, "events_per_second": round(events / total)}
    result |= _percentiles(durations)
    print(
        f"{name:>24}: {result['events_per_second']:>6} events/s  "
        f"p50 {result['p50']} ms  p95 {result['p95']} ms  p99 {result['p99']} ms (per unit)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    _rabbitmqctl("add_vhost", VHOST)
    _rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    try:
        exchange = get_event_exchange("bench", {})
        envelopes = [
            make_envelope("bench", "thing.happened", {"n": n, "pad": "x" * 300})
            for n in range(args.events)
        ]
        with Connection(URI) as connection:
            Queue("bench-events", exchange, routing_key="#")(connection.default_channel).declare()
        results = []

        one_by_one = Publisher(URI, serializer="json", declare=[exchange])
        durations = []
        started = time.perf_counter()
        for envelope in envelopes:
            begun = time.perf_counter()
            one_by_one.publish(
                envelope, exchange=exchange, routing_key=envelope["type"], message_id=envelope["id"]
            )
            durations.append(time.perf_counter() - begun)
        results.append(
            _scenario("confirm per event", args.events, durations, time.perf_counter() - started)
        )

        batched = ConfirmingPublisher(URI, "bench", {})
        durations = []
        started = time.perf_counter()
        for start in range(0, args.events, args.batch):
            begun = time.perf_counter()
            assert not batched.publish(envelopes[start : start + args.batch])
            durations.append(time.perf_counter() - begun)
        batched.close()
        results.append(
            _scenario(
                f"batch of {args.batch}, mandatory",
                args.events,
                durations,
                time.perf_counter() - started,
            )
        )
    finally:
        _rabbitmqctl("delete_vhost", VHOST)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"outbox-publish-{datetime.now(UTC):%Y%m%dT%H%MZ}.json"
    path.write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
