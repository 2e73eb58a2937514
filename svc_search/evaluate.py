"""Offline evaluation of the recommender: leave-last-out hit rate@10 and NDCG@10, against
recommending the most popular books.

For every customer with at least two purchases, the last one is held out; the model is
trained on everything else, recommends 10 books the customer has not bought, and scores
a hit if the held-out book is among them (NDCG also rewards a higher place: 1/log2(rank+1)).

:func:`generate_interactions` makes a data set with the structure real shops have: books
in taste clusters (genres), customers who mostly buy from one or two clusters, and
long-tail popularity (a few books sell a lot; most sell little), so the comparison says
something. Popularity is a strong baseline on such data; a model that cannot beat it is
not worth serving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from svc_search.recommend import fit, recommend_indexes

K = 10


@dataclass(frozen=True)
class Scores:
    users: int
    items: int
    interactions: int
    evaluated: int
    model_hit_rate: float
    model_ndcg: float
    popular_hit_rate: float
    popular_ndcg: float


def generate_interactions(
    users: int = 3000,
    items: int = 1500,
    clusters: int = 12,
    seed: int = 7,
) -> pd.DataFrame:
    """Purchases (``user_id``, ``product_id``, ``occurred_at``) with taste clusters and a
    long tail."""
    rng = np.random.default_rng(seed)
    cluster_of = rng.integers(0, clusters, size=items)
    # Zipf-like popularity over a random order of the books.
    popularity = 1.0 / np.power(rng.permutation(items) + 1.0, 0.9)
    overall = popularity / popularity.sum()
    in_cluster = []
    for cluster in range(clusters):
        weights = np.where(cluster_of == cluster, popularity, 0.0)
        in_cluster.append(weights / weights.sum())
    rows = []
    start = np.datetime64("2026-01-01T00:00:00")
    for user in range(users):
        tastes = rng.choice(clusters, size=rng.choice([1, 2], p=[0.6, 0.4]), replace=False)
        count = int(min(40, 2 + rng.geometric(0.12)))
        bought: set[int] = set()
        for step in range(count):
            # Mostly within the customer's tastes, sometimes whatever is popular.
            weights = overall if rng.random() < 0.15 else in_cluster[int(rng.choice(tastes))]
            item = int(rng.choice(items, p=weights))
            if item in bought:
                continue
            bought.add(item)
            rows.append((f"u{user}", f"b{item}", start + np.timedelta64(user * 1000 + step, "m")))
    return pd.DataFrame(rows, columns=["user_id", "product_id", "occurred_at"])


def leave_last_out(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, one held-out row per customer with two or more purchases)."""
    ordered = interactions.sort_values(["user_id", "occurred_at", "product_id"], kind="stable")
    ordered = ordered.drop_duplicates(["user_id", "product_id"], keep="first")
    counts = ordered.groupby("user_id")["product_id"].transform("size")
    last = ordered.groupby("user_id").cumcount(ascending=False) == 0
    held_out = ordered[last & (counts >= 2)]
    return ordered.drop(held_out.index), held_out


def evaluate(interactions: pd.DataFrame, k: int = K) -> Scores | None:
    """The scores of the model and of popularity; None if nobody has two purchases."""
    train, held_out = leave_last_out(interactions)
    if held_out.empty or train.empty:
        return None
    model = fit(train)
    position = {item: index for index, item in enumerate(model.items)}
    histories = train.groupby("user_id")["product_id"].agg(list)
    popular_order = np.argsort(-model.popularity, kind="stable")
    model_hits, model_gain, popular_hits, popular_gain = [], [], [], []
    for user, target in zip(held_out["user_id"], held_out["product_id"], strict=True):
        history = np.array([position[item] for item in histories.get(user, [])], dtype=int)
        target_index = position.get(target)
        mine = recommend_indexes(model, history, k) if len(history) else []
        seen = set(history.tolist())
        popular = [int(i) for i in popular_order if int(i) not in seen][:k]
        for ranked, hits, gains in (
            (mine, model_hits, model_gain),
            (popular, popular_hits, popular_gain),
        ):
            rank = ranked.index(target_index) if target_index in ranked else None
            hits.append(rank is not None)
            gains.append(1.0 / math.log2(rank + 2) if rank is not None else 0.0)
    return Scores(
        users=interactions["user_id"].nunique(),
        items=interactions["product_id"].nunique(),
        interactions=len(interactions),
        evaluated=len(held_out),
        model_hit_rate=float(np.mean(model_hits)),
        model_ndcg=float(np.mean(model_gain)),
        popular_hit_rate=float(np.mean(popular_hits)),
        popular_ndcg=float(np.mean(popular_gain)),
    )


def format_table(results: dict[str, Scores | None]) -> str:
    lines = [
        f"| data set | customers | books | purchases | evaluated | item-item HR@{K} | "
        f"popularity HR@{K} | item-item NDCG@{K} | popularity NDCG@{K} | lift (HR) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, scores in results.items():
        if scores is None:
            lines.append(f"| {name} | not enough data: nobody has two purchases |" + " |" * 8)
            continue
        lift = (
            f"{scores.model_hit_rate / scores.popular_hit_rate:.2f}x"
            if scores.popular_hit_rate
            else "n/a"
        )
        lines.append(
            f"| {name} | {scores.users} | {scores.items} | {scores.interactions} | "
            f"{scores.evaluated} | {scores.model_hit_rate:.3f} | {scores.popular_hit_rate:.3f} | "
            f"{scores.model_ndcg:.3f} | {scores.popular_ndcg:.3f} | {lift} |"
        )
    return "\n".join(lines)
