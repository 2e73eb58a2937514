"""Full-text search in PostgreSQL: the default backend, and the fallback of the other.

- **Matching**: ``websearch_to_tsquery('english', text)`` against a weighted, GIN-indexed
  ``tsvector`` (title and ISBN A, authors B, description C). websearch syntax accepts any
  string ("quoted phrases", ``-exclusions``, ``or``), so user input cannot cause a syntax
  error. A text that spells an ISBN (10 or 13, hyphens allowed) matches that book only.
- **Ranking**: ``ts_rank`` normalised by document length, ties broken by id.
- **Broad texts** (more than ``exact_limit`` matches, ``SEARCH_EXACT_LIMIT``; a common word in
  a large catalog): ranking and counting every match would visit tens of thousands of
  rows (over a second at a million books). Instead, relevance ranks the first
  ``exact_limit`` matches in storage order (after a rebuild, id order: an unbiased sample)
  plus every match whose title is the text or whose author's name is the text; the total
  is PostgreSQL's estimate and facet counts are scaled from the sample. The answer says
  ``exhaustive: false``. Other sorts walk their B-tree and stay exact.
- **Typos**: when a text finds nothing, each word missing from the lexicon of title and
  author words (``search_terms``) is replaced by its nearest trigram neighbour, the search
  runs again, and the answer says ``did_you_mean``.
- **Facets** (first page only): one aggregate pass over the matches.
- **Pages**: keyset on the sort's key and the id, never offsets.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from common.books import author_key
from common.db import isoformat
from common.money import money
from svc_search.query import (
    AUTHOR_FACET_SIZE,
    PRICE_BUCKETS,
    RATING_STEPS,
    SearchQuery,
    position_fields,
    price_bucket_key,
)

NAME = "postgres"
#: Titles a suggestion picks its few from: a common prefix ("the", "hist") is in tens of
#: thousands of titles, and a search box must answer while the customer types.
SUGGEST_CANDIDATES = 1000
#: Rows an exact title or author-name match may add to a sampled ranking.
_BOOSTED_LIMIT = 500
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: Written out where used (not a CTE), so the planner sees the words and their statistics.
TSQUERY = "websearch_to_tsquery('english', :words)"
#: Words shorter than this are not corrected (too many near neighbours to guess).
MIN_CORRECTABLE = 4

# Sort -> (ORDER BY, keyset comparison). Every order ends with the id, so it is total.
_ORDER = {
    "relevance": ("score DESC, product_id DESC", "<"),
    "price": ("price_amount ASC, product_id ASC", ">"),
    "-price": ("price_amount DESC, product_id DESC", "<"),
    "newest": ("created_at DESC, product_id DESC", "<"),
    "rating": ("rating_average DESC, rating_count DESC, product_id DESC", "<"),
}
#: What the facet counts read of each match.
_FACET_COLUMNS = (
    "category_id, category_name, authors, author_keys, price_amount, rating_average, "
    "rating_count, in_stock"
)
HIT_COLUMNS = (
    "product_id",
    "isbn13",
    "title",
    "authors",
    "category_id",
    "category_name",
    "price_amount",
    "currency",
    "publication_year",
    "created_at",
    "rating_average",
    "rating_count",
    "in_stock",
)


def hit_columns(alias: str = "") -> str:
    """The columns :func:`hit_to_dict` reads, optionally qualified by a table alias."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + column for column in HIT_COLUMNS)


def search(session: Session, query: SearchQuery, exact_limit: int) -> dict[str, Any]:
    # For this transaction: bitmaps of broad matches stay exact (lossy ones recheck whole
    # pages); the sample of a broad text is the same rows for every page of it (a
    # synchronised or parallel scan would start elsewhere, or interleave).
    session.execute(
        text(
            "SELECT set_config('work_mem', '32MB', true), "
            "set_config('synchronize_seqscans', 'off', true), "
            "set_config('max_parallel_workers_per_gather', '0', true)"
        )
    )
    result = _run(session, query, query.text, exact_limit)
    if result["total_hint"] == 0 and query.text and not query.isbn13 and not query.after:
        corrected = correct_spelling(session, query.text)
        if corrected and corrected != query.text.lower():
            retried = _run(session, query, corrected, exact_limit)
            if retried["items"]:
                retried["did_you_mean"] = corrected
                return _answer(retried)
    return _answer(result)


def _answer(result: dict[str, Any]) -> dict[str, Any]:
    result.pop("total_hint")
    return result


def _run(session: Session, query: SearchQuery, words: str, exact_limit: int) -> dict[str, Any]:
    """One page, and the facet counts on the first, in one statement (one visit of the
    matches); a second, planner-only statement estimates the total when it is large."""
    where, params = _conditions(session, query, words)
    order, comparison = _ORDER[query.sort]
    keys = position_fields(query.sort)
    score = f"ts_rank(search_vector, {TSQUERY}, 1)" if params["has_text"] else "0::real"
    ranked = (
        f"SELECT {hit_columns()}, author_keys, {score} AS score FROM search_documents WHERE {where}"
    )
    params["sample_size"] = exact_limit + 1
    sampled = query.sort == "relevance" and params["has_text"]
    if sampled:
        # Bounded: a sample of the matches plus the exact title and author-name matches
        # (a UNION: a book in both is ranked once). Under the limit, the sample is all.
        params["exact_title"] = words.lower()
        params["exact_author"] = [author_key(words)]
        params["boosted_limit"] = _BOOSTED_LIMIT
        ctes = [
            f"sample AS MATERIALIZED ({ranked} LIMIT :sample_size)",
            f"""hits AS (
                SELECT * FROM sample
                UNION
                ({ranked} AND (lower(title) = :exact_title OR author_keys @> :exact_author)
                 LIMIT :boosted_limit))""",
        ]
    else:
        ctes = [f"hits AS ({ranked})"]
        if query.with_facets:
            # Other orders walk their B-tree for the page; the counts need the matches.
            ctes.append(
                f"sample AS MATERIALIZED (SELECT {_FACET_COLUMNS} FROM search_documents "
                f"WHERE {where} LIMIT :sample_size)"
            )
    keyset = ""
    if query.after is not None:
        placeholders = []
        for index, (name, value) in enumerate(zip(keys, query.after, strict=True)):
            params[f"after_{index}"] = value
            cast = {"score": "real", "created_at": "timestamptz", "product_id": "uuid"}.get(name)
            placeholders.append(f"CAST(:after_{index} AS {cast})" if cast else f":after_{index}")
        keyset = f"WHERE ({', '.join(keys)}) {comparison} ({', '.join(placeholders)})"
    params["page_size"] = query.limit + 1
    ctes.append(f"page AS (SELECT * FROM hits {keyset} ORDER BY {order} LIMIT :page_size)")
    if query.with_facets:
        # Facets LEFT JOIN page: one row even when the page is empty.
        select = (
            f"SELECT page.*, facets.* FROM ({_facet_aggregates()}) facets LEFT JOIN page ON true"
        )
    elif sampled:
        select = "SELECT page.*, (SELECT count(*) FROM sample) AS sampled FROM page"
    else:
        select = "SELECT page.* FROM page"
    statement = f"WITH {', '.join(ctes)} {select} ORDER BY {order}"
    rows = session.execute(text(statement), params).mappings().all()
    hits = [row for row in rows if row["product_id"] is not None]
    items = hits[: query.limit]
    next_cursor = None
    if len(hits) > query.limit:
        last = items[-1]
        next_cursor = query.cursor_for([_cursor_value(last[name]) for name in keys])
    total, facets = None, None
    if query.with_facets:
        facets = _facets(rows[0], exact_limit, lambda: _estimated_matches(session, where, params))
        total, exhaustive = facets.pop("total"), facets.pop("exhaustive")
    else:
        # Pages after the first have no counts: only the ranking can be an estimate.
        exhaustive = not (sampled and hits and hits[0]["sampled"] > exact_limit)
    return {
        "items": [hit_to_dict(row) for row in items],
        "next_cursor": next_cursor,
        "total": total,
        "exhaustive": exhaustive,
        "facets": facets,
        "did_you_mean": None,
        "backend": NAME,
        # Whether anything matched at all, for the typo retry (first page: exact).
        "total_hint": total if total is not None else len(hits),
    }


def _conditions(session: Session, query: SearchQuery, words: str) -> tuple[str, dict[str, Any]]:
    conditions = ["NOT deleted"]
    params: dict[str, Any] = {"words": words, "has_text": False}
    if query.isbn13:
        conditions.append("isbn13 = :isbn13")
        params["isbn13"] = query.isbn13
    elif words and _has_lexemes(session, words):
        # Only stop words ("the of") make an empty tsquery that matches nothing: such a
        # text is treated as no text rather than as "find nothing".
        conditions.append(f"search_vector @@ {TSQUERY}")
        params["has_text"] = True
    filters = query.filters
    if "category_id" in filters:
        conditions.append("category_path @> ARRAY[CAST(:category_id AS uuid)]")
        params["category_id"] = filters["category_id"]
    if "author" in filters:
        conditions.append("author_keys @> ARRAY[CAST(:author AS text)]")
        params["author"] = filters["author"]
    if "price_min" in filters:
        conditions.append("price_amount >= :price_min")
        params["price_min"] = filters["price_min"]
    if "price_max" in filters:
        conditions.append("price_amount <= :price_max")
        params["price_max"] = filters["price_max"]
    if "rating_min" in filters:
        conditions.append("rating_count > 0 AND rating_average >= :rating_min")
        params["rating_min"] = filters["rating_min"]
    if "in_stock" in filters:
        conditions.append("in_stock = :in_stock")
        params["in_stock"] = filters["in_stock"]
    return " AND ".join(conditions), params


def _has_lexemes(session: Session, words: str) -> bool:
    return bool(
        session.scalar(
            text("SELECT numnode(websearch_to_tsquery('english', :words)) > 0"), {"words": words}
        )
    )


def _estimated_matches(session: Session, where: str, params: dict[str, Any]) -> int:
    """The planner's estimate of the matches (statistics of the lexemes, not a count)."""
    statement = f"""
        EXPLAIN (FORMAT JSON)
        SELECT 1 FROM search_documents WHERE {where}
    """
    plan = session.scalar(text(statement), params)
    return int(plan[0]["Plan"]["Plan Rows"])


def _facet_aggregates() -> str:
    """The facet counts over ``sample`` (the matches, or their first ``sample_size``),
    as three JSON columns."""
    price_counts = ", ".join(
        f"count(*) FILTER (WHERE price_amount >= {low}"
        + (f" AND price_amount < {high}" if high is not None else "")
        + f") AS price_{index}"
        for index, (low, high) in enumerate(PRICE_BUCKETS)
    )
    rating_counts = ", ".join(
        f"count(*) FILTER (WHERE rating_count > 0 AND rating_average >= {step}) AS rating_{step}"
        for step in RATING_STEPS
    )
    return f"""
        SELECT
            (SELECT row_to_json(c) FROM (
                SELECT count(*) AS total, count(*) FILTER (WHERE in_stock) AS in_stock,
                       {price_counts}, {rating_counts} FROM sample) c) AS facet_counts,
            (SELECT coalesce(json_agg(c), '[]') FROM (
                SELECT category_id, min(category_name) AS name, count(*) AS count FROM sample
                WHERE category_id IS NOT NULL GROUP BY category_id
                ORDER BY count DESC, category_id LIMIT 20) c) AS facet_categories,
            (SELECT coalesce(json_agg(a), '[]') FROM (
                SELECT key, min(name) AS name, count(*) AS count
                FROM sample, unnest(author_keys, authors) AS author(key, name)
                GROUP BY key ORDER BY count DESC, key LIMIT {AUTHOR_FACET_SIZE}) a
            ) AS facet_authors
    """


def _facets(row: Any, exact_limit: int, estimate: Callable[[], int]) -> dict[str, Any]:
    """The facets from :func:`_facet_aggregates`' columns: exact counts, or, when more
    than ``exact_limit`` matched, the sample's counts scaled to the estimated total."""
    counts = row["facet_counts"]
    sampled = counts["total"]
    exhaustive = sampled <= exact_limit
    total = sampled if exhaustive else max(estimate(), sampled)

    def scaled(count: int) -> int:
        return count if exhaustive else round(count * total / sampled)

    return {
        "total": total,
        "exhaustive": exhaustive,
        "category": [
            {
                "value": category["category_id"],
                "label": category["name"],
                "count": scaled(category["count"]),
            }
            for category in row["facet_categories"]
        ],
        "author": [
            {"value": author["key"], "label": author["name"], "count": scaled(author["count"])}
            for author in row["facet_authors"]
        ],
        "price": [
            {
                "value": price_bucket_key(low, high),
                "from": low,
                "to": high,
                "count": scaled(counts[f"price_{index}"]),
            }
            for index, (low, high) in enumerate(PRICE_BUCKETS)
        ],
        "rating": [
            {
                "value": step,
                "label": f"{step} stars and up",
                "count": scaled(counts[f"rating_{step}"]),
            }
            for step in RATING_STEPS
        ],
        "in_stock": [
            {"value": True, "count": scaled(counts["in_stock"])},
            {"value": False, "count": total - scaled(counts["in_stock"])},
        ],
    }


def correct_spelling(session: Session, words: str) -> str | None:
    """The text with each word the lexicon lacks replaced by its most similar known
    word (trigram similarity, the more frequent on ties); None if nothing changed."""
    corrected: list[str] = []
    changed = False
    for word in _WORD.findall(words.lower()):
        replacement = word
        if len(word) >= MIN_CORRECTABLE and not session.scalar(
            text("SELECT 1 FROM search_terms WHERE term = :word"), {"word": word}
        ):
            nearest = session.scalar(
                text(
                    "SELECT term FROM search_terms WHERE term % :word "
                    "ORDER BY similarity(term, :word) DESC, frequency DESC, term LIMIT 1"
                ),
                {"word": word},
            )
            if nearest:
                replacement, changed = nearest, True
        corrected.append(replacement)
    return " ".join(corrected) if changed else None


def suggest(session: Session, prefix: str, limit: int) -> dict[str, Any]:
    """Completions for a search box: titles containing words that start like (or nearly
    like, typos included) what was typed, best-rated first among equals (chosen among the
    first :data:`SUGGEST_CANDIDATES` such titles); and known words completing the last
    word typed."""
    if not prefix:
        return {"query": prefix, "completions": [], "products": [], "backend": NAME}
    last_word = (_WORD.findall(prefix.lower()) or [""])[-1]
    completions = []
    if last_word:
        completions = session.scalars(
            text(
                "SELECT term FROM search_terms WHERE term LIKE :pattern "
                "ORDER BY frequency DESC, term LIMIT :limit"
            ),
            {"pattern": _like_prefix(last_word), "limit": limit},
        ).all()
    rows = session.execute(
        text(
            """
            SELECT product_id, title, authors FROM (
                SELECT product_id, title, authors, rating_count,
                       word_similarity(:prefix, title) AS similarity
                FROM search_documents
                WHERE NOT deleted AND :prefix <% title
                LIMIT :candidates
            ) candidates
            ORDER BY similarity DESC, rating_count DESC, product_id
            LIMIT :limit
            """
        ),
        {"prefix": prefix, "limit": limit, "candidates": SUGGEST_CANDIDATES},
    ).mappings()
    return {
        "query": prefix,
        "completions": list(completions),
        "products": [
            {"id": str(row["product_id"]), "title": row["title"], "authors": list(row["authors"])}
            for row in rows
        ],
        "backend": NAME,
    }


def _like_prefix(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def hit_to_dict(row: Any) -> dict[str, Any]:
    score = row.get("score")
    return {
        "id": str(row["product_id"]),
        "isbn13": row["isbn13"],
        "title": row["title"],
        "authors": list(row["authors"]),
        "category_id": str(row["category_id"]) if row["category_id"] else None,
        "category_name": row["category_name"],
        "price": money(row["price_amount"], row["currency"]),
        "publication_year": row["publication_year"],
        "rating": {"average": round(row["rating_average"], 2), "count": row["rating_count"]},
        "in_stock": row["in_stock"],
        "score": float(score) if score is not None else None,
    }


def _cursor_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
