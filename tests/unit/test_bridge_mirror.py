"""The bridge's batching and retry rules (svc_bridge/mirror.py) against a fake EventBridge
client. A fake, not moto: moto neither throttles nor fails single entries, and these
rules are all about what happens when EventBridge does. The real round trip through moto
is in tests/integration/test_bridge.py."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from common.events import redact_secrets
from svc_bridge.mirror import (
    MAX_REQUEST_BYTES,
    EventBridgeUnavailable,
    Item,
    Mirror,
    entry_size,
    to_entry,
)


def envelope(event_type="order.paid", **data):
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": "order",
        "time": "2026-11-23T10:00:00.123456Z",
        "correlation_id": "c-1",
        "version": 1,
        "data": data,
    }


def items(count, **data):
    return [Item(f"message-{n}", "order", envelope(n=n, **data)) for n in range(count)]


class FakeEventBridge:
    """Answers each put_events call from a script: per call, a function of the entries
    that returns the per-entry results (or raises)."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[list[dict]] = []

    def put_events(self, Entries):  # noqa: N803 - boto3's keyword
        self.calls.append(Entries)
        answer = self.script.pop(0) if self.script else accept_all
        results = answer(Entries)
        return {
            "FailedEntryCount": sum("ErrorCode" in result for result in results),
            "Entries": results,
        }


def accept_all(entries):
    return [{"EventId": f"eb-{uuid.uuid4().hex[:8]}"} for _ in entries]


def fail(positions, code="ThrottlingException"):
    def answer(entries):
        return [
            {"ErrorCode": code, "ErrorMessage": "slow down"}
            if n in positions
            else {"EventId": f"eb-{n}"}
            for n in range(len(entries))
        ]

    return answer


def raise_error(error):
    def answer(entries):
        raise error

    return answer


def throttled_call(_entries):
    raise ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutEvents"
    )


def mirror(client, **options):
    sleeps: list[float] = []
    return (
        Mirror(client, "bookstore", sleep=sleeps.append, jitter=lambda: 1.0, **options),
        sleeps,
    )


def test_an_entry_carries_the_service_the_type_and_the_envelope_with_its_id():
    event = envelope("user.registered", email="a@example.com", verification_token="secret!")
    entry = to_entry("auth", event, "bookstore")
    assert entry["Source"] == "bookstore.auth"
    assert entry["DetailType"] == "user.registered"
    assert entry["EventBusName"] == "bookstore"
    detail = json.loads(entry["Detail"])
    assert detail["id"] == event["id"]
    assert detail["data"] == {"email": "a@example.com"}
    assert entry["Time"].isoformat() == "2026-11-23T10:00:00.123456+00:00"


def test_secret_fields_are_removed_at_any_depth():
    assert redact_secrets(
        {
            "reset_token": "x",
            "nested": [{"Client_Secret": "y", "keep": 1}],
            "password": "z",
            "reset_expires_at": "t",
        }
    ) == {"nested": [{"keep": 1}], "reset_expires_at": "t"}


def test_batches_hold_at_most_ten_entries():
    client = FakeEventBridge()
    outcomes = mirror(client)[0].send(items(25))
    assert [len(call) for call in client.calls] == [10, 10, 5]
    assert all(outcome.accepted and outcome.eventbridge_id for outcome in outcomes)
    assert [outcome.key for outcome in outcomes] == [f"message-{n}" for n in range(25)]


def test_batches_hold_at_most_256_kb():
    client = FakeEventBridge()
    big = items(3, text="x" * 100_000)
    assert all(entry_size(to_entry("order", item.envelope, "b")) > 100_000 for item in big)
    mirror(client)[0].send(big)
    assert [len(call) for call in client.calls] == [2, 1]
    for call in client.calls:
        assert sum(entry_size(entry) for entry in call) <= MAX_REQUEST_BYTES


def test_an_event_too_large_is_parked_with_the_reason_and_never_sent():
    client = FakeEventBridge()
    huge, small = Item("huge", "order", envelope(text="x" * 300_000)), items(1)[0]
    outcomes = mirror(client)[0].send([huge, small])
    assert not outcomes[0].accepted
    assert "too large for EventBridge" in outcomes[0].reason
    assert outcomes[1].accepted
    assert [len(call) for call in client.calls] == [1]


def test_only_the_failed_entries_are_sent_again():
    client = FakeEventBridge(fail({1, 3}))
    batch = items(5)
    m, sleeps = mirror(client, base_delay=0.5)
    outcomes = m.send(batch)
    assert [len(call) for call in client.calls] == [5, 2]
    resent = [json.loads(entry["Detail"])["id"] for entry in client.calls[1]]
    assert resent == [batch[1].envelope["id"], batch[3].envelope["id"]]
    assert all(outcome.accepted for outcome in outcomes)
    assert [outcome.attempts for outcome in outcomes] == [1, 2, 1, 2, 1]
    assert sleeps == [0.5]


def test_a_throttled_call_is_retried_with_growing_jittered_delays_then_parked():
    client = FakeEventBridge(*[throttled_call] * 4)
    m, sleeps = mirror(client, max_attempts=4, base_delay=0.5, max_delay=1.5)
    outcomes = m.send(items(3))
    assert len(client.calls) == 4
    assert sleeps == [0.5, 1.0, 1.5]  # jitter pinned to its maximum: the bounds
    assert all(not outcome.accepted for outcome in outcomes)
    assert "ThrottlingException" in outcomes[0].reason
    assert "gave up after 4 attempts" in outcomes[0].reason


def test_jitter_spreads_the_delay_below_the_bound():
    m = Mirror(FakeEventBridge(), "b", base_delay=1.0, jitter=lambda: 0.25)
    assert m.backoff(3) == 1.0


def test_an_entry_refused_for_what_it_is_is_parked_without_retry():
    client = FakeEventBridge(fail({0}, code="MalformedDetail"))
    outcomes = mirror(client)[0].send(items(2))
    assert len(client.calls) == 1
    assert not outcomes[0].accepted and outcomes[0].reason.startswith("MalformedDetail")
    assert outcomes[1].accepted


def test_unreachable_eventbridge_keeps_what_was_not_settled_for_later():
    client = FakeEventBridge(
        accept_all, raise_error(EndpointConnectionError(endpoint_url="http://x"))
    )
    batch = items(15)
    with pytest.raises(EventBridgeUnavailable) as raised:
        mirror(client)[0].send(batch)
    settled = raised.value.settled
    assert [outcome.key for outcome in settled] == [item.key for item in batch[:10]]
    assert all(outcome.accepted for outcome in settled)


def test_a_refused_call_that_is_not_throttling_holds_the_batch():
    error = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "PutEvents")
    with pytest.raises(EventBridgeUnavailable):
        mirror(FakeEventBridge(raise_error(error)))[0].send(items(1))


class _FakeMessage:
    def __init__(self, envelope: dict) -> None:
        self.envelope, self.headers, self.delivery_info = envelope, {}, {"routing_key": "x"}

    def decode(self) -> dict:
        return self.envelope

    def ack(self) -> None:
        pass


def test_ping_says_degraded_with_the_events_held_while_eventbridge_is_away():
    from svc_bridge.subscription import EventMirror

    class Away:
        def send(self, batch):
            raise EventBridgeUnavailable("EventBridge unreachable: no route", [])

    class Back:
        def send(self, batch):
            return []

    event_mirror = EventMirror()
    event_mirror._running = True
    event_mirror.mirror = Away()
    # One failed try, then "stop" (the real thread sleeps and tries again).
    event_mirror._sleep_while_running = lambda seconds: setattr(event_mirror, "_running", False)
    messages = [_FakeMessage({"id": f"e{n}", "type": "order.paid"}) for n in range(3)]
    assert event_mirror.health() == {"status": "ok", "held": 0}

    event_mirror._flush(messages)
    health = event_mirror.health()
    assert health["status"] == "degraded"
    assert health["held"] == 3
    assert health["detail"] == (
        "EventBridge unavailable, 3 event(s) held: EventBridge unreachable: no route"
    )

    event_mirror._running, event_mirror.mirror = True, Back()
    event_mirror._flush(messages)
    assert event_mirror.health() == {"status": "ok", "held": 0}
