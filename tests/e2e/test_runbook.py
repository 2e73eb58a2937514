"""docs/operations.md works: its ``python shell:<name>`` blocks are typed into a real
``nameko shell`` against the test platform, exactly as written, and the tests check
what they printed and what they changed through the REST API.

The runbook's example values stand for what an operator would paste: the email is
registered as is, the example ids (a user, a product, an order, an event) are replaced
by the ids of what the test made.
"""

from __future__ import annotations

import os
import re
import signal
from functools import cache

import pytest
import requests
from sqlalchemy import text

from common import deadletters
from common.config import REPO_ROOT, SERVICE_PACKAGES
from common.events import EnvelopePublisher, make_envelope
from ops.instance import INSTANCE_ENV
from tests.support import (
    age_current_signing_key,
    assert_problem,
    checkout,
    eventually,
    fill,
    nameko_shell,
    order_event_data,
    publish,
    shopper,
    stock,
    stocked_book,
)

RUNBOOK = REPO_ROOT / "docs" / "operations.md"
BLOCK = re.compile(r"^```python shell:(?P<name>[a-z0-9-]+)\n(?P<code>.*?)^```$", re.M | re.S)

EXAMPLE_EMAIL = "reader@example.com"  # the runbook looks it up as Reader@Example.com
EXAMPLE_USER_ID = "6f0e5c0a-3c1b-4d53-9a53-2b7d4e8f1a90"
EXAMPLE_PRODUCT_ID = "1d7f3e2a-9b4c-4c8e-8f0a-5e6d7c8b9a01"
EXAMPLE_ORDER_ID = "3b9e6f1d-2c4a-4e8b-9d7f-0a1b2c3d4e5f"
EXAMPLE_EVENT_ID = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
PASSWORD = "an operator's customer password"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:")

# The shell sessions the tests run, by block name; together they run every block.
HEALTH_AND_LOOKUP = ("setup", "health", "find-user-by-email")
SUSPENSION = ("setup", "find-user-by-id", "suspend")
REINSTATEMENT = ("setup", "find-user-by-id", "reinstate", "set-roles")
AUDIT = ("setup", "find-user-by-id", "audit-trail")
ROTATION = ("setup", "rotate-signing-key")
BOOKS = ("setup", "find-product", "find-products-by-author", "withdraw-product", "typed-errors")
FULFILMENT = (
    "setup",
    "find-order",
    "customer-orders",
    "operator-id",
    "ship-order",
    "deliver-order",
)
CANCELLATION = (
    "setup",
    "find-order",
    "payment",
    "payment-attempts",
    "operator-id",
    "cancel-order",
    "order-reservation",
)
STOCK = ("setup", "find-product", "get-stock", "set-stock")
UNFINISHED_CHECKOUT = ("setup", "find-order", "pending-checkouts", "order-reservation")
DEAD_LETTERS = (
    "setup",
    "list-dead-letters",
    "dead-letters-without-the-service",
    "replay-dead-letter",
)
REFUNDS = ("setup", "find-order", "operator-id", "refund-order", "reconcile")
NOTIFICATIONS = ("setup", "parked-deliveries", "replay-delivery")
BRIDGE = ("setup", "bridge-dead-letters", "bridge-replay", "bridge-ledger")
EXAMPLE_BRIDGE_EVENT_ID = "0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
SEARCH = ("setup", "search-index-status", "recommender-status", "retrain-recommender")
SESSIONS = (
    HEALTH_AND_LOOKUP,
    SUSPENSION,
    REINSTATEMENT,
    AUDIT,
    ROTATION,
    BOOKS,
    FULFILMENT,
    CANCELLATION,
    STOCK,
    UNFINISHED_CHECKOUT,
    DEAD_LETTERS,
    REFUNDS,
    SEARCH,
    NOTIFICATIONS,
    BRIDGE,
)
# The order service's handler of auth's user.deleted, and where it parks what it cannot
# handle (the runbook names the parking queue for when the service is down).
USER_DELETED_QUEUE = "evt-auth-user.deleted--order.forget_deleted_users_cart"


@cache
def runbook_blocks() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for match in BLOCK.finditer(RUNBOOK.read_text()):
        assert match["name"] not in blocks, f"two runbook blocks are named {match['name']}"
        blocks[match["name"]] = match["code"]
    return blocks


def run_runbook(
    platform, names: tuple[str, ...], *, amqp_uri_set: bool = False, **example_ids: str
) -> str:
    """Types the named blocks into one shell session; a blank line after each ends any
    compound statement, as it does at an interactive prompt. As the runbook's reader
    runs them by default: ``AMQP_URI`` unset, the shell finding the platform by its
    instance (docs/operations.md section 1)."""
    blocks = runbook_blocks()
    commands = "".join(blocks[name] + "\n" for name in names)
    for example, real in example_ids.items():
        commands = commands.replace(example, real)
    return nameko_shell(platform, commands, amqp_uri_set=amqp_uri_set)


def test_every_runbook_command_is_run_by_a_test():
    run = {name for session in SESSIONS for name in session}
    assert set(runbook_blocks()) == run


def test_every_session_runs_with_amqp_uri_unset_and_a_read_only_one_with_it_set(api):
    # Every test below runs its blocks with AMQP_URI unset (run_runbook's default); with
    # it set, the shell reaches the same platform the same way.
    output = run_runbook(api.platform, ("setup", "health"), amqp_uri_set=True)
    for service in SERVICE_PACKAGES:
        assert f"'{service}': {{'service': '{service}', 'status': 'ok'" in output


def login(api, email: str) -> requests.Response:
    return api.post("/auth/login", json={"email": email, "password": PASSWORD})


def test_operator_finds_suspends_reinstates_and_audits_an_account(api):
    registered = api.post(
        "/auth/register",
        json={"email": EXAMPLE_EMAIL, "password": PASSWORD, "accept_terms": True},
    )
    assert registered.status_code == 202, registered.text
    token = login(api, EXAMPLE_EMAIL).json()["access_token"]
    user_id = api.get("/me", token=token).json()["id"]
    ids = {EXAMPLE_USER_ID: user_id}

    output = run_runbook(api.platform, HEALTH_AND_LOOKUP)
    for service in SERVICE_PACKAGES:
        assert f"'{service}': {{'service': '{service}', 'status': 'ok'" in (output)
    assert f"('{user_id}', 'active', ['customer'])" in output

    output = run_runbook(api.platform, SUSPENSION, **ids)
    assert f"('{EXAMPLE_EMAIL}', 'active', None)" in output
    assert "'suspended'" in output
    assert "suspended" in assert_problem(login(api, EXAMPLE_EMAIL), 403)["detail"]
    eventually(lambda: assert_problem(api.get("/me", token=token), 401))  # revoked too

    output = run_runbook(api.platform, REINSTATEMENT, **ids)
    assert f"('{EXAMPLE_EMAIL}', 'suspended', 'chargeback fraud, ticket OPS-4711')" in output
    assert "['admin', 'customer']" in output
    new_token = login(api, EXAMPLE_EMAIL).json()["access_token"]
    # The new role is in tokens issued from now on: this one may administer users.
    assert api.get("/admin/users", token=new_token).status_code == 200

    output = run_runbook(api.platform, AUDIT, **ids)
    # One line per event, newest first: "<occurred_at> <action> <actor_id> <details>".
    # (The shell's prompts may precede the first line.)
    actions = [
        line[found.start() :].split()[1]
        for line in output.splitlines()
        if (found := TIMESTAMP.search(line))
    ]
    operator_actions = {"user.suspended", "user.reinstated", "role.changed"}
    assert [action for action in actions if action in operator_actions] == [
        "role.changed",
        "user.reinstated",
        "user.suspended",
    ], output
    assert "login.refused_suspended" in actions
    assert "'reason': 'chargeback fraud, ticket OPS-4711'" in output


@pytest.mark.usefixtures("restore_signing_keys")
def test_operator_rotates_the_signing_key(api):
    user, _token = api.platform.new_customer(PASSWORD)
    age_current_signing_key(api.platform)  # rotation waits one token lifetime
    output = run_runbook(api.platform, ROTATION)
    kid = re.search(r"\('(?P<kid>[^']+)', \['", output)["kid"]
    assert kid in {key["kid"] for key in api.get("/auth/jwks").json()["keys"]}
    # Tokens signed with the new key are accepted as soon as the gateway sees one.
    fresh = login(api, user["email"]).json()["access_token"]
    eventually(lambda: _assert_ok(api.get("/me", token=fresh)))


def test_operator_looks_up_and_withdraws_a_book(api):
    book = api.create_product(title="The Island of the Day Before", authors=["Umberto Eco"])
    output = run_runbook(api.platform, BOOKS, **{EXAMPLE_PRODUCT_ID: book["id"]})
    assert "('The Island of the Day Before', {'amount': 1299, 'currency': 'EUR'}, 1)" in output
    assert f"[('{book['id']}', 'The Island of the Day Before')]" in output
    assert "not found:" in output
    assert_problem(api.get(f"/products/{book['id']}"), 404)


def paid_order(api, on_hand: int = 5, quantity: int = 2) -> tuple[dict, dict, str]:
    """A customer's PAID order for ``quantity`` copies of a new book: (order, book, the
    customer's token)."""
    book = stocked_book(api, on_hand=on_hand, amount=2000)
    token, address_id = shopper(api)
    fill(api, token, book, quantity)
    placed = checkout(api, token, address_id)
    assert placed.status_code == 201, placed.text
    return placed.json(), book, token


def test_operator_finds_ships_and_delivers_an_order(api):
    order, _book, token = paid_order(api)
    output = run_runbook(
        api.platform,
        FULFILMENT,
        **{EXAMPLE_ORDER_ID: order["id"], EXAMPLE_USER_ID: order["user_id"]},
    )
    assert "('PAID', {'amount': 4000, 'currency': 'EUR'}, [('The Name of the Rose', 2)])" in output
    assert f"{order['created_at']} {order['id']} PAID 4000" in output
    assert "'SHIPPED'" in output
    assert "{'status': 'DELIVERED', 'at': '" in output
    delivered = api.get(f"/orders/{order['id']}", token=token).json()
    assert [step["status"] for step in delivered["history"]] == [
        "PENDING_PAYMENT",
        "PAID",
        "SHIPPED",
        "DELIVERED",
    ]
    # The operator named in the runbook is the one the order's history records.
    with api.platform.engine("order").connect() as connection:
        actors = connection.execute(
            text(
                "SELECT to_status, actor_id::text FROM order_status_changes "
                "WHERE order_id = :id AND to_status IN ('SHIPPED', 'DELIVERED')"
            ),
            {"id": order["id"]},
        ).all()
    assert sorted(actors) == [
        ("DELIVERED", api.platform.admin.id),
        ("SHIPPED", api.platform.admin.id),
    ]


def test_operator_reads_the_payment_and_cancels_an_order_which_refunds_it(api):
    order, book, token = paid_order(api, on_hand=2, quantity=2)
    output = run_runbook(api.platform, CANCELLATION, **{EXAMPLE_ORDER_ID: order["id"]})
    assert "('authorized', 4000, 'EUR', {'brand': 'visa', 'last4': '4242'})" in output
    assert re.search(r"\d\d:\d\d\S* authorize authorized None", output), output
    assert "('REFUNDED', 'cancelled_on_request', 'refunded')" in output
    # A paid order's reservation was committed; cancelling released it (restocked).
    assert f"('released', '{order['created_at'][:4]}" in output
    refunded = api.get(f"/orders/{order['id']}", token=token).json()
    assert refunded["status"] == "REFUNDED"
    assert stock(api, book)["on_hand"] == 2
    with api.platform.rpc() as rpc:
        outcomes = [attempt["outcome"] for attempt in rpc.payment.list_attempts(order["id"])]
    assert outcomes == ["authorized", "refunded"]


def test_operator_reads_and_sets_stock(api):
    book = stocked_book(api, on_hand=7)
    output = run_runbook(api.platform, STOCK, **{EXAMPLE_PRODUCT_ID: book["id"]})
    assert (
        f"{{'product_id': '{book['id']}', 'on_hand': 7, 'reserved': 0, 'available': 7, "
        "'low_stock_threshold': 5}" in output
    )
    assert stock(api, book) == {
        "product_id": book["id"],
        "on_hand": 25,
        "reserved": 0,
        "available": 25,
        "low_stock_threshold": 3,
    }


@pytest.mark.timeout(180)
def test_operator_sees_an_unfinished_checkout_and_the_timer_settles_it(api):
    """Payments is frozen, so the checkout stops after reserving and the customer gets a
    503/504; the runbook lists the order as pending with its copies held, and once the
    checkout window is over the timer settles it without anyone's help."""
    book = stocked_book(api, on_hand=1)
    token, address_id = shopper(api)
    fill(api, token, book)
    payment = api.platform.processes["payment"]
    os.kill(payment.process.pid, signal.SIGSTOP)
    try:
        response = checkout(api, token, address_id)
        assert response.status_code in (503, 504), response.text
        (pending,) = api.get("/orders", token=token).json()["items"]
        assert pending["status"] == "PENDING_PAYMENT"
        output = run_runbook(api.platform, UNFINISHED_CHECKOUT, **{EXAMPLE_ORDER_ID: pending["id"]})
    finally:
        os.kill(payment.process.pid, signal.SIGCONT)
    assert f"{pending['created_at']} {pending['id']} {pending['user_id']}" in output
    assert f"('held', '{pending['created_at'][:4]}" in output
    assert f"[{{'product_id': '{book['id']}', 'quantity': 1}}]" in output

    def settled() -> dict:
        order = api.get(f"/orders/{pending['id']}", token=token).json()
        assert order["status"] in ("PAID", "CANCELLED"), order["status"]
        return order

    order = eventually(settled, timeout=90)
    assert stock(api, book)["reserved"] == 0
    assert stock(api, book)["on_hand"] == (0 if order["status"] == "PAID" else 1)


def test_operator_lists_and_replays_a_dead_lettered_event(api):
    with api.platform.broker() as connection:  # earlier runs' parked events
        deadletters.parking_queue(USER_DELETED_QUEUE)(connection.default_channel).purge()
    # A user.deleted event without a user id: the order service can never handle it.
    poison = make_envelope("auth", "user.deleted", {})
    EnvelopePublisher(api.platform.amqp_uri, "auth", {"AMQP_URI": api.platform.amqp_uri})(poison)
    eventually(lambda: _parked(api, poison["id"], times=1))

    output = run_runbook(api.platform, DEAD_LETTERS, **{EXAMPLE_EVENT_ID: poison["id"]})
    assert f" {poison['id']} auth user.deleted" in output
    # Parked before the handler ran: it breaks its contract (openapi/asyncapi.yaml).
    assert "1 ContractViolation: user.deleted.v1 at data: 'user_id' is a required" in output
    # The listing without the service reads the queue the runbook names.
    assert f"'event_id': '{poison['id']}'" in output
    assert f"{{'replayed': 1, 'event_ids': ['{poison['id']}']}}" in output
    # Replayed to the handler, which fails again: parked again, not lost or looping.
    eventually(lambda: _parked(api, poison["id"], times=2))


def test_the_dead_letter_listing_without_the_service_runs_with_no_broker_setting_at_all(platform):
    """Neither AMQP_URI nor an instance (a checkout where bin/run never ran): the shell
    uses ops/shell.yaml's default broker, and so does the block (it once read
    os.environ["AMQP_URI"] and failed with a KeyError)."""
    commands = "".join(
        runbook_blocks()[name] + "\n" for name in ("setup", "dead-letters-without-the-service")
    )
    output = nameko_shell(platform, commands, amqp_uri_set=False, **{INSTANCE_ENV: ""})
    # (The shell's banner mentions typed errors: look for a raised one, not the word.)
    assert "Traceback" not in output and "Error:" not in output, output
    assert "127.0.0.1:5672" in output, "the shell says which broker it uses"
    assert re.search(r"^(?:(?:>>>|\.\.\.) )*\[", output, re.M), f"a listing:\n{output}"


def _parked(api, event_id: str, times: int) -> None:
    with api.platform.rpc() as rpc:
        parked = [item for item in rpc.order.list_dead_letters() if item["event_id"] == event_id]
    assert [item["parked_count"] for item in parked] == [times], parked


def _assert_ok(response: requests.Response) -> None:
    assert response.status_code == 200, response.text


def test_operator_refunds_part_of_an_order_and_reconciles(api):
    order, _, token = paid_order(api, on_hand=2, quantity=2)
    output = run_runbook(api.platform, REFUNDS, **{EXAMPLE_ORDER_ID: order["id"]})
    assert "('PAID', 500)" in output
    assert "('mock', 1, False, 0)" in output
    assert (
        api.get(f"/orders/{order['id']}", token=token).json()["payment"]["refunded_amount"] == 500
    )


def test_operator_inspects_the_search_index_and_retrains_the_recommender(api):
    book = api.create_product(title="Runbook Search")
    eventually(lambda: _assert_searchable(api, book["id"]))
    output = run_runbook(api.platform, SEARCH)
    assert "(1, 'ok', None)" in output  # one book, healthy, never rebuilt
    assert "(None, None, 0, 0)" in output  # no model yet, no purchases
    # The new model's version (versions keep counting across the suite's data resets).
    printed = re.search(r"^(?:>>> )*(\d+)$", output, re.M)
    assert printed, output
    with api.platform.rpc() as rpc:
        assert rpc.search.recommender_status()["model_version"] == int(printed[1])


def _assert_searchable(api, product_id: str) -> None:
    ids = [hit["id"] for hit in api.get("/search", params={"q": "runbook"}).json()["items"]]
    assert product_id in ids


def test_operator_replays_a_parked_webhook_delivery_and_a_bridge_dead_letter(api):
    # An endpoint nothing listens on: every try is refused, then the delivery is parked.
    endpoint = api.post(
        "/admin/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["order.delivered"]},
        token=api.admin,
    ).json()
    event = publish(api.platform, "order", "order.delivered", order_event_data())
    delivery = eventually(lambda: _parked_delivery(api, endpoint["id"]), timeout=30)
    output = run_runbook(api.platform, NOTIFICATIONS)
    assert f"('{delivery['id']}', 'webhook', 'http://127.0.0.1:9/hooks'," in output
    assert "'pending'" in output
    # The replay gives the delivery a fresh round of tries (three in tests): at least one
    # more attempt than before it, however far that round has got when we look.
    eventually(lambda: _assert_attempts_beyond(api, event["id"], 3))

    huge = publish(api.platform, "order", "order.noted", {"note": "x" * 300_000})
    eventually(lambda: _assert_parked_in_bridge(api.platform, huge["id"]))
    output = run_runbook(api.platform, BRIDGE, **{EXAMPLE_BRIDGE_EVENT_ID: huge["id"]})
    assert f"('{huge['id']}', 'order.noted', 'too large for EventBridge" in output
    assert f"{{'replayed': 1, 'event_ids': ['{huge['id']}']}}" in output
    assert "'parked'" in output


def _parked_delivery(api, endpoint_id):
    items = api.get(f"/admin/webhooks/{endpoint_id}/deliveries", token=api.admin).json()["items"]
    assert len(items) == 1 and items[0]["status"] == "parked", items
    return items[0]


def _assert_attempts_beyond(api, event_id, before):
    found = api.get("/admin/notifications", params={"event_id": event_id}, token=api.admin)
    assert len(found.json()["items"]) > before, found.json()


def _assert_parked_in_bridge(platform, event_id):
    with platform.rpc() as rpc:
        assert event_id in {dead["event_id"] for dead in rpc.bridge.list_dead_letters()}
