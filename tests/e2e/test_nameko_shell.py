"""Operators use ``nameko shell``: the services answer there like they do over HTTP."""

from __future__ import annotations

from tests.support import nameko_shell


def test_operator_reads_and_lists_the_catalog(api):
    product = api.create_product(title="Operators Read This")
    output = nameko_shell(
        api.platform,
        f'print("TITLE", n.rpc.catalog.get_product("{product["id"]}")["title"])\n'
        'print("COUNT", len(n.rpc.catalog.list_products(limit=5)["items"]))\n'
        'print("PING", n.rpc.auth.ping()["status"])\n',
    )
    assert "TITLE Operators Read This" in output
    assert "COUNT 1" in output
    assert "PING ok" in output


def test_operator_changes_are_validated_like_rest_calls(api):
    output = nameko_shell(
        api.platform,
        "import common.errors\n"
        "try:\n"
        '    n.rpc.catalog.create_product({"title": "No ISBN"})\n'
        "except common.errors.InvalidInput as error:\n"
        '    print("REFUSED", error.detail)\n'
        "\n",
    )
    assert "REFUSED" in output
    assert "isbn13" in output
    assert api.all_products() == []
