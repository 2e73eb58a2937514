"""What a stretch of load costs the platform: RPC calls, commits, events, CPU seconds.

A :class:`WorkMeter` takes a snapshot before and after a benchmark scenario and gives the
difference, so a benchmark can divide it by what it did (orders placed) and say what one
unit of work costs. Everything is read from outside the processes, as an operator would:

- **RPC calls and events consumed**: each service's Prometheus counters
  (``bookstore_rpc_calls_total``, ``bookstore_events_handled_total``), scraped from the
  ports given by ``<SERVICE>_METRICS_PORT`` (common/metrics.py). The gateway's own
  event consumer (its cache invalidation) is not among them.
- **Commits**: ``pg_stat_database.xact_commit`` of each service's database. PostgreSQL
  publishes a backend's counters when it goes idle, at most once a second and at the
  latest ten seconds later, so :meth:`WorkMeter.settle` waits that long for them.
- **Events published**: rows added to each service's outbox, by event type.
- **CPU seconds**: user + system time from ``/proc/<pid>/stat`` of every process of the
  platform (the services and the gateway, its spawned workers included, started from
  ``platform_dir``), of the PostgreSQL backends connected to its databases (their
  command line names the database), and, marked as shared, of RabbitMQ and
  PostgreSQL's own background processes, which serve every user of the machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# PostgreSQL flushes an idle backend's statistics within this many seconds (PG 15).
PG_STATS_FLUSH_S = 11.0
SHARED_RABBITMQ = "rabbitmq (shared)"
SHARED_POSTGRES = "postgresql background (shared)"
# Queues that may never empty while measuring: parked events, and the bridge's, which
# bin/run starts without AWS credentials (it holds its events until EventBridge answers).
NEVER_DRAINED = (".dead", "bridge-events")
_BACKEND = re.compile(r"^postgres: [^:]+: \S+ (\S+) ")


@dataclass
class Snapshot:
    cpu_by_pid: dict[int, tuple[str, float]] = field(default_factory=dict)
    rpc_calls: Counter[str] = field(default_factory=Counter)
    events_consumed: Counter[str] = field(default_factory=Counter)
    commits: Counter[str] = field(default_factory=Counter)
    outbox_last_id: dict[str, int] = field(default_factory=dict)
    taken_at: float = 0.0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _cpu_seconds(pid: int) -> float | None:
    stat = _read(Path(f"/proc/{pid}/stat"))
    if stat is None:
        return None
    # The command name (field 2) may hold spaces: count fields after its closing paren.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _parent(pid: int) -> int | None:
    stat = _read(Path(f"/proc/{pid}/stat"))
    return int(stat.rsplit(")", 1)[1].split()[1]) if stat else None


def _label(pid: int, platform_dir: Path, databases: Mapping[str, str]) -> str | None:
    """Which part of the platform a process is, or None if it is none of ours."""
    raw = _read(Path(f"/proc/{pid}/cmdline"))
    if not raw:
        return None
    command = raw.replace("\0", " ").strip()
    if command.startswith("postgres:"):
        backend = _BACKEND.match(command)
        if backend is None:
            return SHARED_POSTGRES
        service = databases.get(backend.group(1))
        return f"postgresql ({service})" if service else None
    if "beam.smp" in command and "rabbit" in command:
        return SHARED_RABBITMQ
    if pid == os.getpid() or "python" not in command:
        return None
    if "multiprocessing" in command:
        # The gateway's workers (and their resource tracker) are spawned: their command
        # line names no module, their parent does.
        parent = _parent(pid)
        return _label(parent, platform_dir, databases) if parent else None
    try:
        if Path(f"/proc/{pid}/cwd").resolve() != platform_dir:
            return None
    except OSError:
        return None
    service = re.search(r"svc_([a-z]+)", command)
    if service:
        return service.group(1)
    if re.search(r"-m gateway\b|\bgateway\b", command):
        return "gateway"
    return None


def cpu_by_pid(platform_dir: Path, databases: Mapping[str, str]) -> dict[int, tuple[str, float]]:
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        label = _label(pid, platform_dir, databases)
        seconds = _cpu_seconds(pid) if label else None
        if label and seconds is not None:
            found[pid] = (label, seconds)
    return found


def scrape(port: int) -> tuple[Counter[str], Counter[str]]:
    """(RPC calls by ``service.method``, events handled by ``service.handler``)."""
    rpc_calls: Counter[str] = Counter()
    events: Counter[str] = Counter()
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "bookstore_rpc_calls_total":
                rpc_calls[f"{sample.labels['service']}.{sample.labels['method']}"] += sample.value
            elif sample.name == "bookstore_events_handled_total":
                events[f"{sample.labels['service']}.{sample.labels['handler']}"] += sample.value
    return rpc_calls, events


class WorkMeter:
    """Snapshots of one running platform: ``database_urls`` by service, the metrics
    ``ports`` by service, and the directory its processes were started from."""

    def __init__(
        self,
        database_urls: Mapping[str, str],
        ports: Mapping[str, int],
        platform_dir: Path,
        amqp_vhost: str | None = None,
    ) -> None:
        self.database_urls = dict(database_urls)
        self.ports = dict(ports)
        self.platform_dir = platform_dir.resolve()
        self.amqp_vhost = amqp_vhost
        self.databases = {
            make_url(url).database: service for service, url in self.database_urls.items()
        }
        self._engines = {
            service: create_engine(url, pool_size=1, max_overflow=0)
            for service, url in self.database_urls.items()
        }

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()

    def snapshot(self) -> Snapshot:
        snapshot = Snapshot(taken_at=time.monotonic())
        snapshot.cpu_by_pid = cpu_by_pid(self.platform_dir, self.databases)
        for port in self.ports.values():
            rpc_calls, events = scrape(port)
            snapshot.rpc_calls.update(rpc_calls)
            snapshot.events_consumed.update(events)
        for service, engine in self._engines.items():
            with engine.connect() as connection:
                database = make_url(self.database_urls[service]).database
                snapshot.commits[service] = connection.scalar(
                    text("SELECT xact_commit FROM pg_stat_database WHERE datname = :name"),
                    {"name": database},
                )
                snapshot.outbox_last_id[service] = self._outbox_last_id(connection)
        return snapshot

    @staticmethod
    def _outbox_last_id(connection: Any) -> int:
        has_outbox = connection.scalar(text("SELECT to_regclass('outbox') IS NOT NULL"))
        if not has_outbox:
            return 0
        return connection.scalar(text("SELECT coalesce(max(id), 0) FROM outbox"))

    def settle(self, timeout: float = 60.0) -> None:
        """Waits until the platform is quiet: every outbox relayed, every queue of the
        vhost empty, then PostgreSQL's statistics flush."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self._backlog() or self._queued()):
            time.sleep(0.5)
        time.sleep(PG_STATS_FLUSH_S)

    def _backlog(self) -> int:
        waiting = 0
        for engine in self._engines.values():
            with engine.connect() as connection:
                if connection.scalar(text("SELECT to_regclass('outbox') IS NOT NULL")):
                    waiting += connection.scalar(
                        text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    )
        return waiting

    def _queued(self) -> int:
        if self.amqp_vhost is None:
            return 0
        listed = subprocess.run(  # noqa: S603 - fixed arguments
            ["rabbitmqctl", "-q", "list_queues", "-p", self.amqp_vhost, "name", "messages"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        waiting = 0
        for line in listed.stdout.splitlines():
            name, _, count = line.rpartition("\t")
            if count.isdigit() and not name.endswith(NEVER_DRAINED):
                waiting += int(count)
        return waiting

    def events_published(self, before: Snapshot) -> Counter[str]:
        published: Counter[str] = Counter()
        for service, engine in self._engines.items():
            with engine.connect() as connection:
                if not connection.scalar(text("SELECT to_regclass('outbox') IS NOT NULL")):
                    continue
                rows = connection.execute(
                    text("SELECT event_type, count(*) FROM outbox WHERE id > :last GROUP BY 1"),
                    {"last": before.outbox_last_id.get(service, 0)},
                )
                for event_type, count in rows:
                    published[event_type] += count
        return published

    def difference(self, before: Snapshot, after: Snapshot) -> dict[str, Any]:
        """What happened between two snapshots, as plain totals."""
        cpu: Counter[str] = Counter()
        for pid, (label, seconds) in after.cpu_by_pid.items():
            _, earlier = before.cpu_by_pid.get(pid, (label, 0.0))
            cpu[label] += seconds - earlier
        return {
            "elapsed_s": round(after.taken_at - before.taken_at, 2),
            "rpc_calls": _positive(after.rpc_calls - before.rpc_calls),
            "events_consumed": _positive(after.events_consumed - before.events_consumed),
            "events_published": dict(self.events_published(before)),
            "commits": _positive(after.commits - before.commits),
            "cpu_seconds": {label: round(seconds, 3) for label, seconds in cpu.items()},
        }


def net_of_idle(totals: dict[str, Any], idle: dict[str, Any]) -> dict[str, Any]:
    """``totals`` less what the platform does anyway over as long (``idle``: a
    :meth:`WorkMeter.difference` taken with no load): its timers, polls and relays.
    Without this, the slower a run, the more background work each order seems to cost."""
    scale = totals["elapsed_s"] / idle["elapsed_s"] if idle["elapsed_s"] else 0.0

    def less(key: str) -> dict[str, float]:
        return {
            name: max(0.0, value - scale * idle[key].get(name, 0.0))
            for name, value in totals[key].items()
        }

    return {
        **totals,
        "rpc_calls": less("rpc_calls"),
        "commits": less("commits"),
        "cpu_seconds": less("cpu_seconds"),
    }


def _positive(counter: Counter[str]) -> dict[str, float]:
    return {key: value for key, value in sorted(counter.items()) if value > 0}


def per_unit(totals: dict[str, Any], units: int) -> dict[str, Any]:
    """``totals`` (from :meth:`WorkMeter.difference`) divided by ``units`` (orders)."""

    def each(values: Mapping[str, float]) -> dict[str, float]:
        return {key: round(value / units, 3) for key, value in values.items()}

    def total(values: Iterable[float]) -> float:
        return round(sum(values) / units, 3)

    shared = (SHARED_RABBITMQ, SHARED_POSTGRES)
    platform_cpu = [v for k, v in totals["cpu_seconds"].items() if k not in shared]
    return {
        "units": units,
        "rpc_calls": total(totals["rpc_calls"].values()),
        "commits": total(totals["commits"].values()),
        "events_published": total(totals["events_published"].values()),
        "events_consumed": total(totals["events_consumed"].values()),
        "cpu_ms_platform": round(1000 * sum(platform_cpu) / units, 1),
        "cpu_ms_with_shared": round(1000 * sum(totals["cpu_seconds"].values()) / units, 1),
        "by": {
            "rpc_calls": each(totals["rpc_calls"]),
            "commits": each(totals["commits"]),
            "events_published": each(totals["events_published"]),
            "events_consumed": each(totals["events_consumed"]),
            "cpu_ms": {k: round(1000 * v / units, 1) for k, v in totals["cpu_seconds"].items()},
        },
    }
