"""Rebuilding the search index from the catalog, while search keeps answering.

The new index is built beside the live one, in ``search_documents_build``: rows loaded
first, indexes created after (much faster than maintaining them row by row), the
lexicon computed from it. Then one short transaction swaps it in:

1. lock the live table against writes (``EXCLUSIVE``: queries still read it);
2. copy over what events changed in the live table since the build started (a row the
   export read before an update arrived), unless the build has a newer version;
3. drop the live table and rename the build table, its indexes and constraint.

Queries during the build read the old table; during the swap they wait a moment for the
lock. Index definitions are copied from ``pg_indexes``, so they stay whatever the
migrations made them. Elasticsearch (when configured) is rebuilt the same way: a new
concrete index, filled in bulk from the new table, then the alias is swapped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from psycopg2.extras import execute_values
from sqlalchemy import Connection, Engine, text

from common.db import analyze, utcnow
from svc_search.backends.elastic import BULK_SIZE, ElasticBackend
from svc_search.indexing import DOCUMENT_COLUMNS, Category, document_values
from svc_search.models import DOCUMENTS_TABLE, TERMS_TABLE

log = logging.getLogger(__name__)

BUILD_SUFFIX = "_build"
PAGE_SIZE = 1000
#: Columns the swap copies from the live table (all but the generated ones).
_COPIED = (*DOCUMENT_COLUMNS, "es_dirty", "indexed_at")


class Progress(Protocol):
    def update(self, n: int) -> Any: ...


#: ``fetch_page(after)``: the catalog's ``export_for_search`` page after id ``after``.
FetchPage = Callable[[str | None], dict[str, Any]]


def rebuild_index(
    engine: Engine,
    fetch_page: FetchPage,
    categories: dict[str, Category],
    *,
    progress: Callable[[int | None], Progress] | None = None,
    elastic: ElasticBackend | None = None,
) -> dict[str, Any]:
    """Rebuilds ``search_documents`` (and the Elasticsearch index, if given) from the
    catalog; returns a summary. ``progress(total)`` makes the progress bar."""
    started_at = utcnow()
    clock = time.perf_counter()
    with engine.begin() as connection:
        build_id = connection.scalar(
            text(
                "INSERT INTO index_builds (started_at, status, documents) "
                "VALUES (:at, 'running', 0) RETURNING id"
            ),
            {"at": started_at},
        )
    try:
        with engine.begin() as connection:
            _create_build_tables(connection)
        documents = _load(engine, fetch_page, categories, progress)
        with engine.begin() as connection:
            # More memory makes the GIN builds several times faster; this session only.
            connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            _copy_indexes(connection, DOCUMENTS_TABLE)
            connection.execute(
                text(
                    f"ALTER TABLE {DOCUMENTS_TABLE}{BUILD_SUFFIX} ADD CONSTRAINT "
                    f"{DOCUMENTS_TABLE}_pkey{BUILD_SUFFIX} PRIMARY KEY (product_id)"
                )
            )
            _fill_terms(connection)
            # Statistics before queries see the table: without them the planner guesses
            # (generic selectivity for every word) until autovacuum gets round to it.
            analyze(connection, f"{DOCUMENTS_TABLE}{BUILD_SUFFIX}", f"{TERMS_TABLE}{BUILD_SUFFIX}")
        with engine.begin() as connection:
            carried = _swap(connection, started_at)
        if elastic is not None:
            _rebuild_elastic(engine, elastic, progress)
        seconds = round(time.perf_counter() - clock, 1)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE index_builds SET status = 'finished', finished_at = now(), "
                    "documents = :documents, seconds = :seconds, detail = :detail WHERE id = :id"
                ),
                {
                    "id": build_id,
                    "documents": documents,
                    "seconds": seconds,
                    "detail": f"{carried} changes made during the build carried over",
                },
            )
        return {
            "build": build_id,
            "documents": documents,
            "seconds": seconds,
            "carried_over": carried,
        }
    except BaseException as error:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE index_builds SET status = 'failed', finished_at = now(), "
                    "detail = :detail WHERE id = :id"
                ),
                {"id": build_id, "detail": f"{type(error).__name__}: {error}"[:1000]},
            )
            _drop_build_tables(connection)
        raise


def _create_build_tables(connection: Connection) -> None:
    _drop_build_tables(connection)
    for table in (DOCUMENTS_TABLE, TERMS_TABLE):
        connection.execute(
            text(
                f"CREATE TABLE {table}{BUILD_SUFFIX} (LIKE {table} "
                "INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS)"
            )
        )


def _drop_build_tables(connection: Connection) -> None:
    for table in (DOCUMENTS_TABLE, TERMS_TABLE):
        connection.execute(text(f"DROP TABLE IF EXISTS {table}{BUILD_SUFFIX}"))


def _pages(fetch_page: FetchPage) -> Iterator[dict[str, Any]]:
    after = None
    while True:
        page = fetch_page(after)
        yield page
        after = page["next_after"]
        if after is None:
            return


def _load(
    engine: Engine,
    fetch_page: FetchPage,
    categories: dict[str, Category],
    progress: Callable[[int | None], Progress] | None,
) -> int:
    columns = (*DOCUMENT_COLUMNS, "es_dirty")
    statement = (
        f"INSERT INTO {DOCUMENTS_TABLE}{BUILD_SUFFIX} ({', '.join(columns)}) VALUES %s "
        "ON CONFLICT DO NOTHING"
    )
    loaded = 0
    bar = None
    raw = engine.raw_connection()
    try:
        for page in _pages(fetch_page):
            if bar is None and progress is not None:
                bar = progress(page.get("total"))
            rows = []
            for item in page["items"]:
                values = document_values(
                    item["product"],
                    categories,
                    available=item["available"],
                    stock_version=item.get("stock_version", 0),
                    rating=item["rating"],
                )
                rows.append((*(values[name] for name in DOCUMENT_COLUMNS), False))
            with raw.cursor() as cursor:
                execute_values(
                    cursor, statement, rows, template=_row_template(), page_size=len(rows) or 1
                )
            raw.commit()
            loaded += len(rows)
            if bar is not None:
                bar.update(len(rows))
    finally:
        raw.close()
    return loaded


def _row_template() -> str:
    casts = {
        "product_id": "uuid",
        "category_id": "uuid",
        "category_path": "uuid[]",
        "created_at": "timestamptz",
    }
    parts = [f"%s::{casts[name]}" if name in casts else "%s" for name in DOCUMENT_COLUMNS]
    return "(" + ", ".join(parts) + ", %s)"


def _copy_indexes(connection: Connection, table: str) -> None:
    """Creates on the build table every index the live table has (but its primary key)."""
    definitions = connection.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = :table "
            "AND indexname <> :pkey"
        ),
        {"table": table, "pkey": f"{table}_pkey"},
    ).all()
    for name, definition in definitions:
        pattern = rf"^CREATE (UNIQUE )?INDEX {re.escape(name)} ON (\S+\.)?{re.escape(table)} "
        replacement = f"CREATE \\1INDEX {name}{BUILD_SUFFIX} ON {table}{BUILD_SUFFIX} "
        renamed = re.sub(pattern, replacement, definition)
        if renamed == definition:
            raise RuntimeError(f"cannot copy index definition: {definition}")
        connection.execute(text(renamed))


def _fill_terms(connection: Connection) -> None:
    connection.execute(
        text(
            f"INSERT INTO {TERMS_TABLE}{BUILD_SUFFIX} (term, frequency) "
            "SELECT word, ndoc FROM ts_stat($$SELECT to_tsvector('simple', title || ' ' || "
            f"authors_text) FROM {DOCUMENTS_TABLE}{BUILD_SUFFIX} WHERE NOT deleted$$)"
        )
    )
    connection.execute(
        text(
            f"ALTER TABLE {TERMS_TABLE}{BUILD_SUFFIX} ADD CONSTRAINT "
            f"{TERMS_TABLE}_pkey{BUILD_SUFFIX} PRIMARY KEY (term)"
        )
    )
    _copy_indexes(connection, TERMS_TABLE)


def _swap(connection: Connection, started_at: Any) -> int:
    live, build = DOCUMENTS_TABLE, f"{DOCUMENTS_TABLE}{BUILD_SUFFIX}"
    connection.execute(text(f"LOCK TABLE {live}, {TERMS_TABLE} IN EXCLUSIVE MODE"))
    columns = ", ".join(_COPIED)
    updates = ", ".join(f"{name} = excluded.{name}" for name in _COPIED if name != "product_id")
    carried = connection.execute(
        text(
            f"INSERT INTO {build} ({columns}) SELECT {columns} FROM {live} "
            "WHERE indexed_at >= :started "
            f"ON CONFLICT (product_id) DO UPDATE SET {updates} "
            f"WHERE {build}.product_version <= excluded.product_version"
        ),
        {"started": started_at},
    ).rowcount
    for table in (DOCUMENTS_TABLE, TERMS_TABLE):
        indexes = connection.scalars(
            text(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = :table"
            ),
            {"table": f"{table}{BUILD_SUFFIX}"},
        ).all()
        connection.execute(text(f"DROP TABLE {table}"))
        connection.execute(text(f"ALTER TABLE {table}{BUILD_SUFFIX} RENAME TO {table}"))
        for index in indexes:
            # Renaming the primary key's index renames its constraint too.
            connection.execute(
                text(f"ALTER INDEX {index} RENAME TO {index.removesuffix(BUILD_SUFFIX)}")
            )
    return carried


def _rebuild_elastic(
    engine: Engine, elastic: ElasticBackend, progress: Callable[[int | None], Progress] | None
) -> None:
    index = elastic.new_index_name()
    elastic.create_index(index)
    started_at = utcnow()
    with engine.connect() as connection:
        total = connection.scalar(text(f"SELECT count(*) FROM {DOCUMENTS_TABLE} WHERE NOT deleted"))
        bar = progress(total) if progress else None
        rows = connection.execution_options(yield_per=BULK_SIZE).execute(
            text(f"SELECT * FROM {DOCUMENTS_TABLE} WHERE NOT deleted")
        )
        for batch in rows.mappings().partitions(BULK_SIZE):
            elastic.bulk(batch, index=index)
            if bar is not None:
                bar.update(len(batch))
    elastic.swap_alias(index)
    with engine.begin() as connection:
        # Rows changed while the bulk ran stay dirty: the service's timer pushes them.
        connection.execute(
            text(
                f"UPDATE {DOCUMENTS_TABLE} SET es_dirty = false "
                "WHERE es_dirty AND indexed_at < :started"
            ),
            {"started": started_at},
        )
