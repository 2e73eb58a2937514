"""Comparing a derived copy with its source: counts and checksums by id range, then the
ids that differ (docs/decisions/0063).

Both sides summarise their rows the same way: ids are bucketed by their first two hex
digits (256 ranges), and each bucket gets its row count and the MD5 of its ``id:version``
list in id order. Equal buckets are done; only a differing bucket is compared id by id.
A whole catalog is two grouped scans, and a repair moves only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

#: Hex digits of the id that name its bucket (16**2 = 256 buckets).
BUCKET_DIGITS = 2

Digest = dict[str, dict[str, Any]]


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
) -> dict[str, int]:
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
    return {row["id"]: int(row["version"]) for row in rows}


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

    def add(self, source: dict[str, int], copy: dict[str, int]) -> None:
        self.missing += sorted(set(source) - set(copy))
        self.extra += sorted(set(copy) - set(source))
        self.stale += sorted(i for i in set(source) & set(copy) if copy[i] < source[i])

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
