"""Anomalies: a closed window far outside what the same hour of the week usually does
(docs/decisions/0132).

The baseline of a window is every 5-minute window of the same hour of the week in the
previous :data:`BASELINE_WEEKS` weeks (12 slots a week, so up to 96 samples). A window
is scored with the modified z-score of Iglewicz and Hoaglin: ``0.6745 (x - median) /
MAD``, robust to the outliers the baseline itself holds (a past sale, an outage). When
more than half of the samples are equal the MAD is 0 and the mean absolute deviation
stands in (``1.2533 * meanAD``, the same scale for normal data). A window is anomalous
when its score is beyond :data:`THRESHOLD` *and* it is off the median by a margin a
person would care about (:data:`MIN_DEVIATION`), which keeps quiet hours (a median of 1
order) from raising alarms over one order more or less.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common.db import isoformat
from svc_analytics.domain import WINDOW

BASELINE_WEEKS = 8
MIN_SAMPLES = 16
THRESHOLD = 4.0
#: The least a window must differ from the median, relative to it and absolutely.
MIN_DEVIATION = 0.4
MIN_ABSOLUTE = {"orders": 3, "gross": 0}
METRICS = ("orders", "gross")
WEEK = timedelta(weeks=1)
#: The MAD of normal data is 0.6745 of its standard deviation.
MAD_TO_SIGMA = 1 / 0.6745


@dataclass(frozen=True)
class Score:
    value: float
    baseline: float
    score: float

    @property
    def direction(self) -> str:
        return "spike" if self.value > self.baseline else "drop"


def robust_score(value: float, samples: Sequence[float], *, counts: bool = False) -> Score | None:
    """The modified z-score of ``value`` against ``samples`` (None: too few samples).
    ``counts``: the samples are counts of independent events (orders), which vary at
    least as a Poisson variable does, so the spread is never taken below ``sqrt(median)``
    (without that floor, 12 orders where 6 is usual would be an alarm every night)."""
    if len(samples) < MIN_SAMPLES:
        return None
    median = statistics.median(samples)
    deviations = [abs(sample - median) for sample in samples]
    mad = statistics.median(deviations)
    if counts and median > 0:
        score = (value - median) / max(MAD_TO_SIGMA * mad, median**0.5)
    elif mad > 0:
        score = (value - median) / (MAD_TO_SIGMA * mad)
    else:
        mean_deviation = statistics.fmean(deviations)
        if mean_deviation > 0:
            score = (value - median) / (1.2533 * mean_deviation)
        else:
            score = 0.0 if value == median else float("inf") * (1 if value > median else -1)
    return Score(float(value), float(median), score)


def is_anomalous(metric: str, scored: Score | None) -> bool:
    if scored is None or abs(scored.score) < THRESHOLD:
        return False
    off = abs(scored.value - scored.baseline)
    return off >= MIN_ABSOLUTE.get(metric, 0) and off >= MIN_DEVIATION * scored.baseline


def baseline_starts(start: datetime) -> list[tuple[datetime, datetime]]:
    """The hour of the week of ``start`` in each of the previous weeks, as ranges."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    return [
        (hour - weeks * WEEK, hour - weeks * WEEK + timedelta(hours=1))
        for weeks in range(1, BASELINE_WEEKS + 1)
    ]


def score_windows(session: Session, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Scores closed windows (one currency's or several); records and returns each
    anomaly found (the ``analytics.anomaly.detected`` data). The baselines of all of
    them are read in one query per currency."""
    from svc_analytics.models import Anomaly, Window

    found: list[dict[str, Any]] = []
    by_currency: dict[str, list[Any]] = {}
    for row in rows:
        by_currency.setdefault(row.currency, []).append(row)
    for currency, closed in by_currency.items():
        earliest = min(row.start for row in closed) - BASELINE_WEEKS * WEEK - timedelta(hours=1)
        latest = max(row.start for row in closed) - WEEK + timedelta(hours=1)
        history: dict[datetime, tuple[int, int]] = {
            past.start: (past.orders, past.gross)
            for past in session.execute(
                select(Window.start, Window.orders, Window.gross).where(
                    Window.currency == currency, Window.start >= earliest, Window.start < latest
                )
            )
        }
        for row in closed:
            samples = [
                history[start]
                for since, _ in baseline_starts(row.start)
                for start in (since + WINDOW * slot for slot in range(12))
                if start in history
            ]
            for index, metric in enumerate(METRICS):
                scored = robust_score(
                    getattr(row, metric),
                    [sample[index] for sample in samples],
                    counts=metric == "orders",
                )
                if is_anomalous(metric, scored):
                    found.append(_record(session, Anomaly, row, metric, scored))
    return found


def _record(session: Session, model: type, row: Any, metric: str, scored: Score) -> dict[str, Any]:
    finite = abs(scored.score) != float("inf")
    session.execute(
        insert(model)
        .values(
            start=row.start,
            currency=row.currency,
            metric=metric,
            value=scored.value,
            baseline=scored.baseline,
            score=scored.score if finite else 1e9,
            direction=scored.direction,
        )
        .on_conflict_do_nothing()
    )
    return {
        "window_start": isoformat(row.start),
        "window_end": isoformat(row.start + WINDOW),
        "currency": row.currency,
        "metric": metric,
        "value": scored.value,
        "baseline": scored.baseline,
        "score": round(scored.score, 3) if finite else None,
        "direction": scored.direction,
    }


# -- evaluation ------------------------------------------------------------------------------


def generated_orders(weeks: int, peak: float, rng: random.Random) -> list[float]:
    """Orders per 5-minute window over ``weeks`` weeks: a daily curve (busy evenings,
    quiet nights), busier weekends, and Poisson noise around it."""
    counts = []
    for slot in range(weeks * 7 * 24 * 12):
        day, minute = divmod(slot * 5, 24 * 60)
        hour = minute / 60
        daily = 0.15 + 0.85 * max(0.0, 1 - abs(hour - 20) / 12)
        weekly = 1.3 if day % 7 in (5, 6) else 1.0
        counts.append(float(_poisson(peak * daily * weekly, rng)))
    return counts


def _poisson(mean: float, rng: random.Random) -> int:
    # A normal approximation is plenty above ~20; Knuth's method below.
    if mean > 30:
        return max(0, round(rng.gauss(mean, mean**0.5)))
    limit, count, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def evaluate(
    weeks: int = 10,
    peak: float = 40.0,
    injections: int = 60,
    seed: int = 17,
) -> dict[str, Any]:
    """Injects ``injections`` drops (to 10-40 %) and spikes (to 2-4x) into the last two
    weeks of a generated history, scores every window of those weeks against its
    baseline, and reports precision and recall."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible history, not a secret
    counts = generated_orders(weeks, peak, rng)
    per_week = 7 * 24 * 12
    scored_from = (weeks - 2) * per_week
    injected: dict[int, str] = {}
    for slot in rng.sample(range(scored_from, len(counts)), injections):
        if rng.random() < 0.5:
            counts[slot] = float(round(counts[slot] * rng.uniform(0.1, 0.4)))
            injected[slot] = "drop"
        else:
            counts[slot] = float(round(max(counts[slot], 3) * rng.uniform(2.0, 4.0)))
            injected[slot] = "spike"
    flagged: set[int] = set()
    for slot in range(scored_from, len(counts)):
        hour_slot = slot - slot % 12
        samples = [
            counts[past]
            for weeks_back in range(1, BASELINE_WEEKS + 1)
            for past in range(
                hour_slot - weeks_back * per_week, hour_slot - weeks_back * per_week + 12
            )
            if past >= 0
        ]
        if is_anomalous("orders", robust_score(counts[slot], samples, counts=True)):
            flagged.add(slot)
    true_positives = len(flagged & set(injected))
    return {
        "windows_scored": len(counts) - scored_from,
        "injected": len(injected),
        "flagged": len(flagged),
        "true_positives": true_positives,
        "precision": round(true_positives / len(flagged), 3) if flagged else 1.0,
        "recall": round(true_positives / len(injected), 3) if injected else 1.0,
        "by_kind": {
            kind: {
                "injected": sum(1 for value in injected.values() if value == kind),
                "found": sum(1 for slot in flagged if injected.get(slot) == kind),
            }
            for kind in ("drop", "spike")
        },
    }
