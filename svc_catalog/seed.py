"""A realistic demo catalog of any size, the same every time.

Book ``n`` is always the same book (its id, ISBN, title and price derive from ``n`` and
the seed), and rows that exist are skipped, so running the seed again adds nothing and
running it with a larger ``--books`` adds only the missing books. New books are announced
with ``product.created`` like any other (``with_events=False`` skips that for
benchmark-sized loads; rebuild downstream indexes afterwards).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from faker import Faker
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from tqdm import tqdm

from common.books import author_key, isbn13_check_digit
from common.db import analyze, utcnow
from svc_catalog.categories import category_to_dict
from svc_catalog.models import CatalogOutboxMessage, Category, Product, StockLevel, outbox
from svc_catalog.products import product_to_dict

NAMESPACE = uuid.UUID("6f1d2a52-8c0e-4d4e-9f3c-2b7f1f0c9a11")
BATCH_SIZE = 1000

# slug -> (name, parent slug)
CATEGORIES: dict[str, tuple[str, str | None]] = {
    "fiction": ("Fiction", None),
    "science-fiction": ("Science Fiction", "fiction"),
    "fantasy": ("Fantasy", "fiction"),
    "mystery": ("Mystery & Crime", "fiction"),
    "romance": ("Romance", "fiction"),
    "literary-fiction": ("Literary Fiction", "fiction"),
    "historical-fiction": ("Historical Fiction", "fiction"),
    "non-fiction": ("Non-fiction", None),
    "history": ("History", "non-fiction"),
    "science": ("Science", "non-fiction"),
    "biography": ("Biography & Memoir", "non-fiction"),
    "business": ("Business & Economics", "non-fiction"),
    "travel": ("Travel", "non-fiction"),
    "cooking": ("Food & Cooking", "non-fiction"),
    "technology": ("Technology", None),
    "programming": ("Programming", "technology"),
    "data-science": ("Data Science", "technology"),
    "childrens": ("Children's Books", None),
    "poetry": ("Poetry", None),
}

_TITLE_PATTERNS = (
    "The {adj} {noun}",
    "{noun} of {place}",
    "A {noun} for {person}",
    "The Last {noun}",
    "{adj} {noun}s",
    "Beyond the {noun}",
    "{person}'s {noun}",
    "{place} Nights",
    "Notes on {noun}",
    "The Art of {noun}",
    "Learning {tech}",
    "{tech} in Practice",
    "A Short History of {noun}",
    "When the {noun} Falls",
    "{adj} Hearts",
)
_TECH = (
    "Python",
    "Rust",
    "Distributed Systems",
    "Databases",
    "Machine Learning",
    "Compilers",
    "Cryptography",
    "Networking",
    "Kubernetes",
    "SQL",
    "Go",
    "Algorithms",
)
_FORMATS = ("paperback", "paperback", "hardcover", "ebook")
_LANGUAGES = ("en",) * 8 + ("de", "fr", "es", "it")


class _Pools:
    """Names and words drawn once from Faker with a fixed seed, then picked per book."""

    def __init__(self, seed: int) -> None:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.authors = [fake.name() for _ in range(4000)]
        self.publishers = [
            f"{fake.last_name()} {fake.random_element(('Press', 'Books', 'Publishing', 'House'))}"
            for _ in range(120)
        ]
        self.adjectives = [
            word.capitalize() for word in fake.words(350, part_of_speech="adjective", unique=True)
        ]
        self.nouns = [
            word.capitalize() for word in fake.words(600, part_of_speech="noun", unique=True)
        ]
        self.places = [fake.city() for _ in range(300)]
        self.people = [fake.first_name() for _ in range(300)]
        self.sentences = [fake.sentence(nb_words=14) for _ in range(1500)]


def isbn_for(number: int) -> str:
    body = f"9781{number:08d}"
    return body + isbn13_check_digit(body)


def book_id(number: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"book:{number}")


def category_id(slug: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"category:{slug}")


def demo_book(
    number: int, seed: int, pools: _Pools, category_ids: list[uuid.UUID]
) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + number)  # noqa: S311 - demo data, not secrets
    title = rng.choice(_TITLE_PATTERNS).format(
        adj=rng.choice(pools.adjectives),
        noun=rng.choice(pools.nouns),
        place=rng.choice(pools.places),
        person=rng.choice(pools.people),
        tech=rng.choice(_TECH),
    )
    if title.startswith("A ") and title[2] in "AEIOU":
        title = "An " + title[2:]
    authors = list(
        dict.fromkeys(rng.choice(pools.authors) for _ in range(rng.choice((1, 1, 1, 2, 3))))
    )
    pages = int(rng.triangular(80, 1100, 320))
    return {
        "id": book_id(number),
        "isbn13": isbn_for(number),
        "title": title,
        "authors": authors,
        "author_keys": [author_key(author) for author in authors],
        "description": " ".join(rng.choice(pools.sentences) for _ in range(rng.randint(2, 6))),
        "category_id": rng.choice(category_ids),
        # Prices cluster like real ones: mostly 7-25 EUR, ending in 99.
        "price_amount": max(1, int(rng.lognormvariate(7.2, 0.45)) // 100 * 100 + 99),
        "currency": "EUR",
        "publication_year": min(2026, int(rng.triangular(1850, 2027, 2018))),
        "dimensions_mm": [rng.randint(105, 216), rng.randint(170, 280), max(5, pages // 12)],
        "attributes": {
            "publisher": rng.choice(pools.publishers),
            "pages": pages,
            "language": rng.choice(_LANGUAGES),
            "format": rng.choice(_FORMATS),
        },
        "version": 1,
    }


def seed_categories(session: Session) -> list[uuid.UUID]:
    """Makes sure the demo category tree exists (a category an admin already made with
    the same slug is reused); returns the ids of its leaf categories."""
    ids: dict[str, uuid.UUID] = {}
    for slug, (name, parent) in CATEGORIES.items():  # parents come before children
        existing = session.scalars(select(Category).where(Category.slug == slug)).first()
        if existing is None:
            existing = Category(
                id=category_id(slug),
                slug=slug,
                name=name,
                parent_id=ids[parent] if parent else None,
            )
            session.add(existing)
            session.flush()
            session.refresh(existing)
            outbox.add(session, "category.created", category_to_dict(existing))
        ids[slug] = existing.id
    parents = {parent for _, parent in CATEGORIES.values() if parent}
    return [ids[slug] for slug in CATEGORIES if slug not in parents]


def _batches(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(start + size, total))


def seed_catalog(
    session: Session,
    *,
    books: int,
    seed: int = 42,
    with_events: bool = True,
    progress: bool = True,
) -> int:
    """Makes sure demo books 0..books-1 exist; returns how many were added."""
    category_ids = seed_categories(session)
    session.commit()
    pools = _Pools(seed)
    started = utcnow()
    added = 0
    with tqdm(total=books, unit="book", desc="seeding catalog", disable=not progress) as bar:
        for numbers in _batches(books, BATCH_SIZE):
            rows = []
            for number in numbers:
                row = demo_book(number, seed, pools, category_ids)
                # Older books first, a second apart, so "newest" sorting means something.
                row["created_at"] = row["updated_at"] = started - timedelta(seconds=books - number)
                rows.append(row)
            inserted = session.scalars(
                insert(Product).on_conflict_do_nothing().returning(Product), rows
            ).all()
            if with_events:
                for product in inserted:
                    outbox.add(session, "product.created", product_to_dict(product))
            session.commit()
            added += len(inserted)
            bar.update(len(numbers))
    seed_stock(session)
    # Statistics for what was loaded (docs/decisions/0092).
    analyze(session, Category.__tablename__, Product.__tablename__, StockLevel.__tablename__)
    if with_events:
        analyze(session, CatalogOutboxMessage.__tablename__)
    session.commit()
    return added


def seed_stock(session: Session) -> int:
    """Gives every product without a stock row a deterministic demo quantity (about one
    in twenty is out of stock); counts already set are left alone."""
    result = session.execute(
        text(
            "INSERT INTO stock_levels (product_id, on_hand, reserved, low_stock_threshold) "
            "SELECT id, CASE WHEN abs(hashtext(id::text)) % 20 = 0 THEN 0 "
            "ELSE 1 + abs(hashtext(id::text)) % 40 END, 0, 5 FROM products "
            "ON CONFLICT (product_id) DO NOTHING"
        )
    )
    return result.rowcount
