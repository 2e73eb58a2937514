"""Comparing a derived copy with its source: counts and checksums by id range, then the
ids that differ (docs/decisions/0063).

Both sides summarise their rows the same way: ids are bucketed by their first two hex
digits (256 ranges), and each bucket gets its row count and the MD5 of its ``id:version``
list in id order. Equal buckets are done; only a differing bucket is compared id by id.
A whole catalog is two grouped scans, and a repair moves only what differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.orm import Session

#: Hex digits of the id that name its bucket (16**2 = 256 buckets).
BUCKET_DIGITS = 2

Digest = dict[str, dict[str, Any]]
T = TypeVar("T")

DRIFT = Gauge(
    "bookstore_reconcile_drift",
    "Rows a derived copy differed from its source by at the last reconciliation "
    "(missing, extra or stale).",
    ["copy"],
)
REPAIRED = Counter(
    "bookstore_reconcile_repaired_total",
    "Rows of a derived copy repaired by reconciliation.",
    ["copy"],
)


def digest(session: Session, table: str, id_column: str, version_column: str, where: str) -> Digest:
    """``{bucket: {"count", "checksum"}}`` of ``table``'s rows matching ``where``. The
    names are the caller's constants, never input."""
    rows = session.execute(
        text(
            f"SELECT substr(CAST({id_column} AS text), 1, {BUCKET_DIGITS}) AS bucket, "  # noqa: S608
            f"count(*) AS count, md5(string_agg(CAST({id_column} AS text) || ':' || "
            f"CAST({version_column} AS text), ',' ORDER BY {id_column})) AS checksum "
            f"FROM {table} WHERE {where} GROUP BY 1"
        )
    ).mappings()
    return {row["bucket"]: {"count": row["count"], "checksum": row["checksum"]} for row in rows}


def versions(
    session: Session, table: str, id_column: str, version_column: str, where: str, bucket: str
) -> dict[str, Any]:
    """``{id: version}`` of the rows of one bucket."""
    if len(bucket) != BUCKET_DIGITS or any(c not in "0123456789abcdef" for c in bucket):
        raise ValueError(f"not a bucket: {bucket!r}")
    rows = session.execute(
        text(
            f"SELECT CAST({id_column} AS text) AS id, {version_column} AS version "  # noqa: S608
            f"FROM {table} WHERE {where} "
            f"AND substr(CAST({id_column} AS text), 1, {BUCKET_DIGITS}) = :bucket"
        ),
        {"bucket": bucket},
    ).mappings()
    return {row["id"]: row["version"] for row in rows}


def differing_buckets(source: Digest, copy: Digest) -> list[str]:
    return sorted(b for b in set(source) | set(copy) if source.get(b) != copy.get(b))


@dataclass
class Drift:
    """What a copy lacks (``missing``), has that the source does not (``extra``) and has
    in an older version (``stale``)."""

    source_rows: int = 0
    copy_rows: int = 0
    buckets_differing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.stale)

    def add(self, source: dict[str, Any], copy: dict[str, Any], *, ordered: bool = True) -> None:
        """One bucket's ids compared; ``ordered``: versions are counters (only an older
        copy is stale), else fingerprints (any difference is)."""
        self.missing += sorted(set(source) - set(copy))
        self.extra += sorted(set(copy) - set(source))
        both = set(source) & set(copy)
        if ordered:
            self.stale += sorted(i for i in both if copy[i] < source[i])
        else:
            self.stale += sorted(i for i in both if copy[i] != source[i])

    def report(self) -> dict[str, Any]:
        return {
            "source_rows": self.source_rows,
            "copy_rows": self.copy_rows,
            "in_sync": self.rows == 0,
            "buckets_differing": len(self.buckets_differing),
            "missing": len(self.missing),
            "extra": len(self.extra),
            "stale": len(self.stale),
            # A sample for the operator; the counts above are the whole story.
            "examples": {
                "missing": self.missing[:5],
                "extra": self.extra[:5],
                "stale": self.stale[:5],
            },
        }


def total(summary: Digest) -> int:
    return sum(bucket["count"] for bucket in summary.values())


def compare(
    source: Digest,
    copy: Digest,
    source_versions: Callable[[str], dict[str, Any]],
    copy_versions: Callable[[str], dict[str, Any]],
    *,
    ordered: bool = True,
) -> Drift:
    """The drift between two sides given their digests, reading ids only in the buckets
    that differ."""
    drift = Drift(total(source), total(copy))
    drift.buckets_differing = differing_buckets(source, copy)
    for bucket in drift.buckets_differing:
        drift.add(source_versions(bucket), copy_versions(bucket), ordered=ordered)
    return drift


class Source(Protocol):
    """A source's side, wherever it is (another service, over RPC)."""

    def digest(self) -> Digest: ...

    def versions(self, bucket: str) -> dict[str, Any]: ...


def compare_with_table(
    session: Session,
    source: Source,
    table: str,
    id_column: str,
    version_column: str,
    where: str = "true",
    *,
    ordered: bool = True,
) -> Drift:
    """:func:`compare` of ``source`` with a copy that is ``table``'s rows matching
    ``where`` in ``session``."""
    return compare(
        source.digest(),
        digest(session, table, id_column, version_column, where),
        source.versions,
        lambda bucket: versions(session, table, id_column, version_column, where, bucket),
        ordered=ordered,
    )


def settle(copy: str, drift: Drift, repair: Callable[[Drift], int] | None) -> dict[str, Any]:
    """Records ``drift`` in the metrics and, given ``repair`` (which returns how many
    rows it repaired), repairs it; returns the report."""
    DRIFT.labels(copy).set(drift.rows)
    report = {"copy": copy, **drift.report(), "repaired": 0}
    if repair is not None and drift.rows:
        report["repaired"] = repair(drift)
        REPAIRED.labels(copy).inc(report["repaired"])
    return report


def alone(session: Session, lock_key: int, work: Callable[[], T]) -> T | None:
    """``work()`` under a session-level advisory lock, or None when another instance
    holds it (one instance of a service reconciles at a time)."""
    if not session.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key}):
        return None
    try:
        return work()
    finally:
        session.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key})
        session.commit()


def due(last_run: dict[str, float], interval: float, now: float) -> bool:
    """Whether a periodic reconciliation is due (``interval`` seconds apart, 0 never),
    noting the run in ``last_run`` if so."""
    if interval <= 0 or now - last_run.get("at", -interval) < interval:
        return False
    last_run["at"] = now
    return True
