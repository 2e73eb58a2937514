"""Recommendations: item-item collaborative filtering on what customers bought.

- **Interactions**: one row per (order, book) from ``order.paid``; a refunded order's rows
  are removed. Repeat purchases of a book count once per customer.
- **Model** (:func:`fit`, pandas + scikit-learn): the binary customer x book matrix
  (scipy sparse), cosine similarity between book columns
  (``sklearn.metrics.pairwise.cosine_similarity``, sparse in and out), pruned to each
  book's :data:`NEIGHBORS` most similar; plus popularity (distinct buyers per book).
- **Serving**: the model is stored in this service's database (``item_neighbors``,
  ``popular_items``, versioned in ``recommender_models``), so every instance serves the
  same model and a restart loses nothing. "Also bought" reads one book's neighbours; a
  customer's recommendations sum the neighbours of everything they bought (their
  purchases as of now, not as of training), never including what they bought, topped up
  from popularity for new customers and new books.
- **Training**: a timer asks every few seconds whether the newest model is older than
  ``SEARCH_TRAIN_INTERVAL``; a transaction-scoped advisory lock makes one instance train.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics.pairwise import cosine_similarity
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from common.db import isoformat, parse_id, utcnow
from common.errors import InvalidParameter, NotFound
from svc_search.backends.postgres import hit_columns, hit_to_dict
from svc_search.models import (
    Interaction,
    ItemNeighbor,
    PopularItem,
    RecommenderModel,
    SearchDocument,
)

ALGORITHM = "item-item-cosine"
#: Neighbours kept per book, and popular books kept per model.
NEIGHBORS = 50
POPULAR = 200
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
#: Models kept: the served one and the one before (for comparison by an operator).
MODELS_KEPT = 2
_TRAIN_LOCK = "search:train-recommender"

Runner = Callable[..., Any]


@dataclass(frozen=True)
class FittedModel:
    """A trained model in memory: row/column ``i`` of ``similarity`` is ``items[i]``."""

    items: np.ndarray
    similarity: sparse.csr_matrix
    popularity: np.ndarray
    users: int
    interactions: int

    def neighbors_of(self, index: int) -> list[tuple[int, float]]:
        row = self.similarity.getrow(index)
        order = np.argsort(-row.data, kind="stable")
        return [(int(row.indices[i]), float(row.data[i])) for i in order]

    def popular_indexes(self, limit: int) -> np.ndarray:
        return np.argsort(-self.popularity, kind="stable")[:limit]


def user_item_matrix(
    interactions: pd.DataFrame,
) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """The binary customer x book matrix of ``interactions`` (columns ``user_id`` and
    ``product_id``), with the user and item labels of its rows and columns."""
    users = interactions["user_id"].astype("category")
    items = interactions["product_id"].astype("category")
    matrix = sparse.csr_matrix(
        (
            np.ones(len(interactions), dtype=np.float32),
            (users.cat.codes.to_numpy(), items.cat.codes.to_numpy()),
        ),
        shape=(len(users.cat.categories), len(items.cat.categories)),
    )
    matrix.data[:] = 1.0  # duplicates were summed: a purchase counts once per customer
    return matrix, users.cat.categories.to_numpy(), items.cat.categories.to_numpy()


def fit(interactions: pd.DataFrame, neighbors: int = NEIGHBORS) -> FittedModel:
    matrix, users, items = user_item_matrix(interactions)
    similarity = cosine_similarity(matrix.T, dense_output=False).tocsr()
    similarity.setdiag(0)
    similarity.eliminate_zeros()
    return FittedModel(
        items=items,
        similarity=_top_k_per_row(similarity, neighbors),
        popularity=np.asarray(matrix.sum(axis=0)).ravel(),
        users=len(users),
        interactions=int(matrix.nnz),
    )


def _top_k_per_row(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    rows, cols, values = [], [], []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        data = matrix.data[start:end]
        keep = np.argsort(-data, kind="stable")[:k]
        rows.extend([row] * len(keep))
        cols.extend(matrix.indices[start:end][keep])
        values.extend(data[keep])
    return sparse.csr_matrix((values, (rows, cols)), shape=matrix.shape)


def recommend_indexes(model: FittedModel, history: np.ndarray, limit: int) -> list[int]:
    """Item indexes for a customer who bought ``history`` (item indexes): neighbours'
    summed similarity, then popularity; never what they bought."""
    scores = np.asarray(model.similarity[history].sum(axis=0)).ravel()
    scores[history] = 0.0
    ranked = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0][:limit]
    if len(ranked) < limit:
        taken = set(ranked) | {int(i) for i in history}
        for index in model.popular_indexes(limit + len(taken)):
            if int(index) not in taken:
                ranked.append(int(index))
                if len(ranked) == limit:
                    break
    return ranked


# -- the service's side: interactions, training, serving ---------------------------------


def record_order(session: Session, order: dict[str, Any], occurred_at: str) -> int:
    """The books of a paid order, as interactions; returns how many rows were new."""
    rows = [
        {
            "order_id": parse_id(order["id"], "order_id"),
            "product_id": parse_id(item["product_id"], "product_id"),
            "user_id": parse_id(order["user_id"], "user_id"),
            "quantity": int(item["quantity"]),
            "occurred_at": occurred_at,
        }
        for item in order["items"]
    ]
    if not rows:
        return 0
    result = session.execute(pg_insert(Interaction).values(rows).on_conflict_do_nothing())
    return result.rowcount


def forget_order(session: Session, order_id: str) -> int:
    result = session.execute(
        delete(Interaction).where(Interaction.order_id == parse_id(order_id, "order_id"))
    )
    return result.rowcount


def load_interactions(session: Session) -> pd.DataFrame:
    rows = session.execute(
        select(Interaction.user_id, Interaction.product_id, Interaction.occurred_at)
    ).all()
    return pd.DataFrame(
        [(str(user), str(product), at) for user, product, at in rows],
        columns=["user_id", "product_id", "occurred_at"],
    )


def train_if_due(
    session: Session, interval_seconds: float, force: bool = False, run: Runner | None = None
) -> dict[str, Any] | None:
    """Trains and stores a new model if the newest is older than ``interval_seconds``
    (or ``force``) and no other instance is training; returns its status, else None.
    ``run(fit, frame)`` runs the fitting (a real thread in the service). An interval of
    0 turns scheduled training off: only ``force`` trains (a cron job, an operator)."""
    if not force and interval_seconds <= 0:
        return None
    locked = session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"), {"key": _TRAIN_LOCK}
    )
    if not locked:
        return None
    newest = _newest(session)
    if (
        not force
        and newest is not None
        and utcnow() - newest.trained_at < timedelta(seconds=interval_seconds)
    ):
        return None
    frame = load_interactions(session)
    if newest is not None and not force and len(frame) == newest.interactions:
        # Nothing new to learn; a model trained on the same purchases would be the same.
        # (Compared by row count: a refund and a purchase in one interval would be missed
        # until the next purchase; the next training catches up.)
        return None
    started = time.perf_counter()
    model = (run or _direct)(fit, frame) if len(frame) else None
    version = _store(session, model, time.perf_counter() - started, len(frame))
    session.commit()
    return status(session, version)


def _direct(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


def _store(session: Session, model: FittedModel | None, seconds: float, rows: int) -> int:
    record = RecommenderModel(
        trained_at=utcnow(),
        algorithm=ALGORITHM,
        users=model.users if model else 0,
        items=len(model.items) if model else 0,
        interactions=rows,
        seconds=round(seconds, 3),
        parameters={"neighbors": NEIGHBORS, "popular": POPULAR},
    )
    session.add(record)
    session.flush()
    version = record.version
    if model is not None:
        neighbor_rows = [
            {
                "model_version": version,
                "product_id": uuid.UUID(model.items[index]),
                "neighbor_id": uuid.UUID(model.items[neighbor]),
                "score": score,
            }
            for index in range(len(model.items))
            for neighbor, score in model.neighbors_of(index)
        ]
        for start in range(0, len(neighbor_rows), 5000):
            session.execute(insert(ItemNeighbor), neighbor_rows[start : start + 5000])
        popular = [
            {
                "model_version": version,
                "rank": rank,
                "product_id": uuid.UUID(model.items[index]),
                "purchases": int(model.popularity[index]),
            }
            for rank, index in enumerate(model.popular_indexes(POPULAR), start=1)
        ]
        if popular:
            session.execute(insert(PopularItem), popular)
    old = session.scalars(
        select(RecommenderModel.version)
        .order_by(RecommenderModel.version.desc())
        .offset(MODELS_KEPT)
    ).all()
    if old:
        session.execute(delete(ItemNeighbor).where(ItemNeighbor.model_version.in_(old)))
        session.execute(delete(PopularItem).where(PopularItem.model_version.in_(old)))
        session.execute(delete(RecommenderModel).where(RecommenderModel.version.in_(old)))
    return version


def _newest(session: Session) -> RecommenderModel | None:
    return session.scalars(
        select(RecommenderModel).order_by(RecommenderModel.version.desc()).limit(1)
    ).first()


def status(session: Session, version: int | None = None) -> dict[str, Any]:
    """What operators see: the served model's version, training time and size."""
    model = session.get(RecommenderModel, version) if version else _newest(session)
    interactions_now = session.scalar(select(func.count()).select_from(Interaction))
    if model is None:
        return {
            "model_version": None,
            "trained_at": None,
            "algorithm": ALGORITHM,
            "users": 0,
            "items": 0,
            "interactions": 0,
            "seconds": None,
            "parameters": {},
            "interactions_now": interactions_now,
        }
    return {
        "model_version": model.version,
        "trained_at": isoformat(model.trained_at),
        "algorithm": model.algorithm,
        "users": model.users,
        "items": model.items,
        "interactions": model.interactions,
        "seconds": model.seconds,
        "parameters": model.parameters,
        "interactions_now": interactions_now,
    }


def _limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"limit: must be from 1 to {MAX_LIMIT}.", {"parameter": "limit"})
    return limit


def also_bought(session: Session, product_id: str, limit: int | None = None) -> dict[str, Any]:
    """Books bought by customers who bought this one; popular books when there are too
    few (a new book, a new shop)."""
    limit = _limit(limit)
    product = parse_id(product_id, "product_id")
    exists = session.scalar(
        select(SearchDocument.product_id).where(
            SearchDocument.product_id == product, SearchDocument.deleted.is_(False)
        )
    )
    if exists is None:
        raise NotFound("No such product.", {"product_id": product_id})
    model = _newest(session)
    version = model.version if model else None
    rows = _neighbors(session, version, [product], limit)
    items = [_item(row, "also_bought") for row in rows]
    items += _popular(
        session, version, {product} | {row["product_id"] for row in rows}, limit - len(items)
    )
    return _answer(items, model, product_id=product_id)


def for_user(session: Session, user_id: str, limit: int | None = None) -> dict[str, Any]:
    """The customer's recommendations: never a book they bought."""
    limit = _limit(limit)
    user = parse_id(user_id, "user_id")
    bought = list(
        session.scalars(
            select(Interaction.product_id).where(Interaction.user_id == user).distinct()
        )
    )
    model = _newest(session)
    version = model.version if model else None
    rows = _neighbors(session, version, bought, limit) if bought else []
    items = [_item(row, "bought_together") for row in rows]
    items += _popular(
        session, version, set(bought) | {row["product_id"] for row in rows}, limit - len(items)
    )
    return _answer(items, model)


def _neighbors(
    session: Session, version: int | None, products: list[uuid.UUID], limit: int
) -> list[Any]:
    if version is None or not products:
        return []
    return (
        session.execute(
            text(
                f"""
                SELECT {hit_columns("d")}, s.score
                FROM (
                    SELECT neighbor_id, sum(score) AS score FROM item_neighbors
                    WHERE model_version = :version AND product_id = ANY(:products)
                      AND NOT (neighbor_id = ANY(:products))
                    GROUP BY neighbor_id
                ) s JOIN search_documents d ON d.product_id = s.neighbor_id AND NOT d.deleted
                ORDER BY s.score DESC, d.product_id
                LIMIT :limit
                """
            ),
            {"version": version, "products": products, "limit": limit},
        )
        .mappings()
        .all()
    )


def _popular(
    session: Session, version: int | None, exclude: set[uuid.UUID], limit: int
) -> list[dict[str, Any]]:
    if version is None or limit <= 0:
        return []
    rows = (
        session.execute(
            text(
                f"""
                SELECT {hit_columns("d")}, p.purchases::real AS score
                FROM popular_items p
                JOIN search_documents d ON d.product_id = p.product_id AND NOT d.deleted
                WHERE p.model_version = :version AND NOT (p.product_id = ANY(:exclude))
                ORDER BY p.rank LIMIT :limit
                """
            ),
            {"version": version, "exclude": list(exclude), "limit": limit},
        )
        .mappings()
        .all()
    )
    return [_item(row, "popular") for row in rows]


def _item(row: Any, reason: str) -> dict[str, Any]:
    return {**hit_to_dict(row), "reason": reason}


def _answer(
    items: list[dict[str, Any]], model: RecommenderModel | None, **extra: Any
) -> dict[str, Any]:
    return {
        **extra,
        "items": items,
        "model_version": model.version if model else None,
        "trained_at": isoformat(model.trained_at) if model else None,
    }
