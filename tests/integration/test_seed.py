"""The demo catalog: realistic, valid, and the same every time."""

from __future__ import annotations

from sqlalchemy import func, select, text

from common import schemas
from svc_catalog import seed
from svc_catalog.models import CatalogOutboxMessage, Category, Product
from svc_catalog.products import product_to_dict
from tests.support import eventually


def count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_seeding_is_idempotent_and_grows_on_demand(catalog_db):
    assert seed.seed_catalog(catalog_db, books=40, progress=False) == 40
    assert seed.seed_catalog(catalog_db, books=40, progress=False) == 0
    assert seed.seed_catalog(catalog_db, books=55, progress=False) == 15
    assert count(catalog_db, Product) == 55
    assert count(catalog_db, Category) == len(seed.CATEGORIES)
    created_events = count(
        catalog_db, CatalogOutboxMessage, CatalogOutboxMessage.event_type == "product.created"
    )
    assert created_events == 55


def test_demo_books_are_valid_products(catalog_db):
    seed.seed_catalog(catalog_db, books=30, progress=False)
    products = catalog_db.scalars(select(Product)).all()
    for product in products:
        schemas.validate("Product", product_to_dict(product))
        assert product.category_id is not None
        assert 0 < product.price_amount < 100_000
    assert len({product.isbn13 for product in products}) == 30
    assert len({product.title for product in products}) > 20, "titles vary"


def test_book_n_is_always_the_same_book(catalog_db):
    seed.seed_catalog(catalog_db, books=10, seed=7, progress=False)
    stored = catalog_db.get(Product, seed.book_id(3))
    regenerated = seed.demo_book(3, 7, seed._Pools(7), [stored.category_id])
    assert stored.title == regenerated["title"]
    assert stored.isbn13 == regenerated["isbn13"]
    assert stored.price_amount == regenerated["price_amount"]


def test_existing_categories_with_demo_slugs_are_reused(catalog_db):
    from svc_catalog.categories import create_category

    mine = create_category(catalog_db, {"slug": "poetry", "name": "Verse"})
    catalog_db.commit()
    seed.seed_catalog(catalog_db, books=5, progress=False)
    assert count(catalog_db, Category, Category.slug == "poetry") == 1
    assert catalog_db.scalars(select(Category).where(Category.slug == "poetry")).one().id.hex == (
        mine["id"].replace("-", "")
    )


def test_seed_command(catalog_db, platform, monkeypatch, capsys):
    from ops import cli

    monkeypatch.setenv("CATALOG_DATABASE_URL", platform.database_urls["catalog"])
    assert cli.main(["seed", "--books", "12", "--skip-events"]) == 0
    assert "12 books added" in capsys.readouterr().out
    assert count(catalog_db, Product) == 12
    assert (
        count(
            catalog_db, CatalogOutboxMessage, CatalogOutboxMessage.event_type == "product.created"
        )
        == 0
    )


def _last_analyzed(session, table: str):
    # Manual ANALYZE only (autovacuum's is last_autoanalyze): what the seed did.
    return session.scalar(
        text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :table"),
        {"table": table},
    )


def test_seeding_leaves_statistics_behind(catalog_db):
    before = {table: _last_analyzed(catalog_db, table) for table in ("products", "stock_levels")}
    catalog_db.commit()
    seed.seed_catalog(catalog_db, books=20, progress=False)

    def analysed() -> None:
        catalog_db.commit()  # a new snapshot of the statistics views
        for table, previous in before.items():
            after = _last_analyzed(catalog_db, table)
            assert after is not None and (previous is None or after > previous), table

    eventually(analysed, timeout=10)
