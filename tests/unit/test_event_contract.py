"""The event contract (openapi/asyncapi.yaml) against the code that publishes and
consumes events: no type published that the document does not list, no handler or
webhook subscribed to a type nobody publishes, the REST API's webhook enum and the
bridge's EventBridge mapping as the document says (docs/decisions/0061)."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from common import contract
from common.config import REPO_ROOT, SERVICE_PACKAGES, service_config
from common.events import make_envelope
from common.schemas import spec_document
from common.topology import platform_subscriptions
from svc_bridge.mirror import to_entry
from svc_notify.domain import CUSTOMER_TEMPLATES, SECURITY_TEMPLATES, WEBHOOK_EVENT_TYPES
from svc_order import orders
from tests import asyncapi_schema
from tests.support import order_event_data

DOC = contract.document()
TYPES = contract.event_types()
PUBLISHED = {name: known.producer for (name, _), known in TYPES.items()}


def _resolve(ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = DOC
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_document_is_asyncapi_3_and_every_reference_resolves():
    assert DOC["asyncapi"] == "3.0.0"
    for channel_id, channel in DOC["channels"].items():
        assert channel["address"] and channel["x-producer"] in SERVICE_PACKAGES, channel_id
        for ref in channel["messages"].values():
            _resolve(ref["$ref"])
    for operation_id, operation in DOC["operations"].items():
        assert operation["action"] in {"send", "receive"}, operation_id
        channel = _resolve(operation["channel"]["$ref"])
        for ref in operation["messages"]:
            # An operation's messages are its channel's (AsyncAPI 3.0 requires it).
            assert ref["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            _resolve(ref["$ref"])
        assert channel["messages"]
    for schema in DOC["components"]["schemas"].values():
        Draft7Validator.check_schema(schema)


def test_the_document_is_valid_by_the_official_asyncapi_3_schema():
    validator = Draft7Validator(asyncapi_schema.schema("3.0.0"))
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in validator.iter_errors(DOC)
    ]
    assert errors == []
    # The schema does judge: an AsyncAPI 2 operation verb is refused.
    name, operation = next(iter(DOC["operations"].items()))
    broken = {**DOC, "operations": {name: {**operation, "action": "publish"}}}
    assert not validator.is_valid(broken)


def test_every_type_has_one_producer_and_an_eventbridge_detail_type():
    sends = {}
    for operation in DOC["operations"].values():
        if operation["action"] == "send":
            channel = _resolve(operation["channel"]["$ref"])
            sends[channel["address"]] = channel["x-producer"]
    assert sends == PUBLISHED
    for known in TYPES.values():
        assert known.eventbridge == {
            "source": f"bookstore.{known.producer}",
            "detail-type": known.name,
        }


def _published_literals(package: str) -> set[str]:
    """Event types written with a literal name: ``outbox.add(session, "x.y", ...)``."""
    found = set()
    for path in Path(REPO_ROOT / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "outbox"
                and len(node.args) >= 2
            ):
                kind = node.args[1]
                if isinstance(kind, ast.Constant):
                    found.add(kind.value)
                elif isinstance(kind, ast.IfExp):
                    found |= {kind.body.value, kind.orelse.value}
    return found


def test_every_type_the_code_publishes_is_in_the_document_with_its_producer():
    written = {
        service: _published_literals(package) for service, package in SERVICE_PACKAGES.items()
    }
    # Types passed in a variable: auth's verification emails, payment's settlements, the
    # order's state machine (order.<status> for every transition's target).
    written["auth"] |= {"user.registered", "user.verification_requested"}
    written["payment"] |= {"payment.succeeded", "payment.failed"}
    written["order"] |= {
        f"order.{target.lower()}" for targets in orders.TRANSITIONS.values() for target in targets
    }
    for service, types in written.items():
        for event_type in types:
            assert PUBLISHED.get(event_type) == service, f"{service} publishes {event_type}"
    assert set(PUBLISHED) == set().union(*written.values()), "documented, never published"


def test_every_handler_consumes_a_published_type_and_the_document_lists_it():
    in_code = set()
    for subscription in platform_subscriptions(service_config("catalog")):
        if subscription.event_type == "#":  # the bridge: every type of the source
            types = {
                name for name, producer in PUBLISHED.items() if producer == subscription.source
            }
        else:
            assert PUBLISHED.get(subscription.event_type) == subscription.source, subscription
            types = {subscription.event_type}
        in_code |= {(subscription.queue.name, event_type) for event_type in types}
    documented = set()
    for known in TYPES.values():
        for operation in known.consumers:
            documented.add((operation["x-queue"], known.name))
            assert operation["x-accepts-versions"] == [known.version]
    assert documented == in_code


def test_notify_and_the_api_offer_only_published_webhook_types():
    assert set(WEBHOOK_EVENT_TYPES) <= set(PUBLISHED)
    assert set(CUSTOMER_TEMPLATES) | set(SECURITY_TEMPLATES) <= set(PUBLISHED)
    enum = spec_document()["components"]["schemas"]["WebhookEventType"]["enum"]
    assert set(enum) == {"*", *WEBHOOK_EVENT_TYPES}
    assert "payment.succeeded" in enum, "the type payment really publishes (0017)"


@pytest.mark.parametrize("key", sorted(TYPES), ids=lambda key: key[0])
def test_the_bridge_maps_every_type_as_documented(key):
    known = TYPES[key]
    entry = to_entry(known.producer, {"id": str(uuid.uuid4()), "type": known.name}, "bus")
    assert {"source": entry["Source"], "detail-type": entry["DetailType"]} == known.eventbridge


def _product_created(**data_changes) -> dict:
    data = {
        "id": str(uuid.uuid4()),
        "isbn13": "9780000000002",
        "title": "A book",
        "authors": ["Someone"],
        "price": {"amount": 1999, "currency": "EUR"},
        "version": 1,
        **data_changes,
    }
    return make_envelope("catalog", "product.created", data)


def test_a_good_event_passes_and_a_bad_one_says_where_it_breaks():
    assert contract.violation(_product_created()) is None
    problem = contract.violation(_product_created(price={"amount": "19.99", "currency": "EUR"}))
    assert problem and "product.created.v1" in problem and "data/price/amount" in problem
    assert "not accepted" in contract.violation({**_product_created(), "version": 2}, (1,))
    # A type the contract does not know is not judged at consume (test probes use them).
    assert contract.violation(make_envelope("probe", "probe.thing", {})) is None


def test_publishing_a_bad_or_unknown_event_is_refused_when_enforced(monkeypatch):
    contract.check_published(make_envelope("catalog", "nothing.happened", {}))  # not enforced
    monkeypatch.setenv(contract.ENFORCE_ENV, "enforce")
    with pytest.raises(contract.ContractViolation, match=r"not in asyncapi\.yaml"):
        contract.check_published(make_envelope("catalog", "nothing.happened", {}))
    with pytest.raises(contract.ContractViolation, match="data"):
        contract.check_published(_product_created(id="not-a-uuid"))
    with pytest.raises(contract.ContractViolation, match="published by catalog"):
        contract.check_published({**_product_created(), "source": "order"})
    contract.check_published(_product_created())


@pytest.mark.parametrize("event_type", sorted(t for t, _ in TYPES if t.startswith("order.")))
def test_every_order_event_requires_its_shipping_charge(event_type):
    # The order emails show it (svc_notify/templates); order_to_dict always sends it.
    message = DOC["components"]["messages"][f"{event_type}.v1"]
    data_schema = _resolve(message["payload"]["allOf"][1]["properties"]["data"]["$ref"])
    while "$ref" in data_schema:
        data_schema = _resolve(data_schema["$ref"])
    assert "shipping" in data_schema["required"], event_type
    data = order_event_data(status="PAID")
    assert contract.violation(make_envelope("order", event_type, data)) is None
    del data["shipping"]
    problem = contract.violation(make_envelope("order", event_type, data))
    assert problem and "'shipping' is a required property" in problem
