"""A checkout's instance name keeps its databases and vhost apart (ops/instance.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.instance import apply_instance, new_instance_name, use_checkout_environment


def test_a_new_name_comes_from_the_folder_and_differs_between_clones():
    first, second = (new_instance_name(Path("/home/ada/Book-Store.v2")) for _ in range(2))
    assert first.startswith("book_store_v2_")
    assert len(first) == len("book_store_v2_") + 4
    assert first != second or new_instance_name(Path("/x/Book-Store.v2")) != first


def test_an_instance_names_every_database_the_vhost_and_rate_limit_keys():
    environ = {"BOOKSTORE_INSTANCE": "clone_2_ab12"}
    assert apply_instance(environ) == "clone_2_ab12"
    assert environ["AUTH_DATABASE_URL"].endswith("/bookstore_clone_2_ab12_auth")
    assert environ["BRIDGE_DATABASE_URL"].endswith("/bookstore_clone_2_ab12_bridge")
    assert environ["AMQP_URI"].endswith(":5672/bookstore-clone_2_ab12")
    assert environ["GATEWAY_RATE_LIMIT_PREFIX"] == "bookstore:clone_2_ab12:ratelimit:"


def test_what_the_environment_sets_itself_wins():
    environ = {
        "BOOKSTORE_INSTANCE": "mine",
        "AMQP_URI": "pyamqp://guest:guest@broker:5672/prod",
        "CATALOG_DATABASE_URL": "postgresql+psycopg2://u:p@db/catalog",
    }
    apply_instance(environ)
    assert environ["AMQP_URI"] == "pyamqp://guest:guest@broker:5672/prod"
    assert environ["CATALOG_DATABASE_URL"] == "postgresql+psycopg2://u:p@db/catalog"
    assert environ["ORDER_DATABASE_URL"].endswith("/bookstore_mine_order")


def test_no_instance_changes_nothing():
    environ: dict[str, str] = {}
    assert apply_instance(environ) is None
    assert environ == {}


def test_an_unusable_name_is_refused():
    with pytest.raises(ValueError, match="lower-case letters"):
        apply_instance({"BOOKSTORE_INSTANCE": "Robert'); DROP"})


def test_the_checkout_environment_file_fills_only_what_is_unset(tmp_path):
    env_file = tmp_path / ".env.local"
    env_file.write_text("# a comment\nBOOKSTORE_INSTANCE=fromfile\nAUTH_KEY_PASSPHRASE=file\n")
    environ = {"AUTH_KEY_PASSPHRASE": "shell"}
    use_checkout_environment(environ, env_file)
    assert environ["AUTH_KEY_PASSPHRASE"] == "shell"
    assert environ["BOOKSTORE_INSTANCE"] == "fromfile"
    assert environ["SEARCH_DATABASE_URL"].endswith("/bookstore_fromfile_search")
