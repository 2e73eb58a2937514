"""Operators use ``nameko shell``: the services answer there like they do over HTTP."""

from __future__ import annotations

from kombu import Exchange, Queue

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


def test_the_shell_starts_with_typed_errors_and_lists_methods_with_docstrings(api):
    output = nameko_shell(
        api.platform,
        # No import: the startup file (ops/shell_startup.py) has made errors typed.
        "try:\n"
        '    n.rpc.catalog.get_product("00000000-0000-0000-0000-000000000000")\n'
        "except n.errors.NotFound as error:\n"
        '    print("TYPED", type(error).__name__)\n'
        "\n"
        'print("DIR", "get_order" in dir(n.rpc.order), "order" in dir(n.rpc))\n'
        'n.methods("order")\n',
    )
    assert "Bookstore operators' shell" in output
    assert "calls time out after 30s" in output
    assert "TYPED NotFound" in output
    assert "DIR True True" in output
    assert "n.rpc.order.get_order(order_id: str, user_id: str | None = None)" in output
    assert "only if that customer placed it" in output, "the docstring"


def test_a_call_to_a_stopped_service_times_out_and_says_what_to_check(api):
    # A service that ran once and stopped leaves its queue: calls wait there unanswered.
    with api.platform.broker() as connection:
        exchange = Exchange("nameko-rpc", type="topic", durable=True)
        queue = Queue("rpc-stopped", exchange, routing_key="stopped.*", auto_delete=False)
        queue(connection.default_channel).declare()
    try:
        output = nameko_shell(
            api.platform,
            "try:\n"
            "    n.rpc.stopped.anything()\n"
            "except Exception as error:\n"
            '    print("GAVE UP", type(error).__name__, error)\n'
            "\n"
            'print("STILL WORKS", n.rpc.catalog.ping()["status"])\n',
            BOOKSTORE_SHELL_TIMEOUT="2",
        )
    finally:
        with api.platform.broker() as connection:
            queue(connection.default_channel).delete()
    assert "GAVE UP ShellCallTimeout stopped.anything gave no answer within 2s" in output
    assert "bookstore ping stopped" in output
    assert "STILL WORKS ok" in output
