"""The event contract on the running platform (openapi/asyncapi.yaml, common/contract.py,
docs/decisions/0061): what breaks it is parked with the reason before a handler sees it,
and a webhook subscribed to every type receives the payment events payment publishes."""

from __future__ import annotations

import json
import uuid

from common.events import EnvelopePublisher, make_envelope
from tests.support import eventually, paid_order, register_webhook

SEARCH_CREATED_QUEUE = "evt-catalog-product.created--search.index_created_product"


def _parked_in_search(platform, event_id: str) -> dict:
    with platform.rpc() as rpc:
        parked = [item for item in rpc.search.list_dead_letters() if item["event_id"] == event_id]
    assert len(parked) == 1, parked
    return parked[0]


def _publish(platform, envelope: dict) -> None:
    EnvelopePublisher(platform.amqp_uri, envelope["source"], {})(envelope)


def _book(**changes) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "isbn13": "9780000000002",
        "title": "Contract",
        "authors": ["A. Writer"],
        "price": {"amount": 1500, "currency": "EUR"},
        "version": 1,
        **changes,
    }


def test_an_event_that_breaks_its_schema_is_parked_with_the_reason(api):
    platform = api.platform
    broken = make_envelope("catalog", "product.created", _book(price=15.0))
    _publish(platform, broken)
    parked = eventually(lambda: _parked_in_search(platform, broken["id"]))
    assert parked["queue"] == SEARCH_CREATED_QUEUE
    assert parked["attempts"] == 0, "parked before the handler ran"
    assert parked["error"].startswith("ContractViolation: product.created.v1 at data/price")
    with platform.rpc() as rpc:
        assert rpc.search.search(q="Contract")["total"] == 0


def test_a_version_the_consumer_does_not_accept_is_parked(api):
    platform = api.platform
    future = {**make_envelope("catalog", "product.created", _book()), "version": 2}
    _publish(platform, future)
    parked = eventually(lambda: _parked_in_search(platform, future["id"]))
    assert "version 2 of 'product.created' is not accepted (only 1)" in parked["error"]


def test_a_webhook_for_every_type_receives_payment_succeeded(api, receiver):
    register_webhook(api, receiver.url, event_types=["*"])
    _, _, order = paid_order(api)

    def types_received() -> set[str]:
        received = {json.loads(call["body"])["type"] for call in receiver.calls}
        assert {"order.created", "payment.succeeded", "order.paid"} <= received, received
        return received

    eventually(types_received)
    [succeeded] = [
        json.loads(call["body"])
        for call in receiver.calls
        if json.loads(call["body"])["type"] == "payment.succeeded"
    ]
    assert succeeded["data"]["order_id"] == order["id"]
    assert "client_secret" not in succeeded["data"]
