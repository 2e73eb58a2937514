"""The bridge service against moto in server mode: every service's events, of any type,
reach EventBridge with their id and without secrets; an event too large is parked with
the reason and listed for operators. (Throttling and failed entries, which moto does not
simulate, are in tests/unit/test_bridge_mirror.py with a fake client.)"""

from __future__ import annotations

import uuid

from tests.support import eventually, publish, received, routed_queue


def test_any_event_of_any_service_is_mirrored_with_its_id_and_without_secrets(platform):
    with routed_queue(platform, {"source": [{"prefix": "bookstore."}]}) as queue_url:
        registered = publish(
            platform,
            "auth",
            "user.registered",
            {"user_id": str(uuid.uuid4()), "email": "a@example.com", "verification_token": "t0k"},
        )
        # A type no code anywhere knows about: mirrored all the same.
        novel = publish(platform, "catalog", f"shelf.rearranged_{uuid.uuid4().hex[:6]}", {"n": 1})
        events = {event["detail"]["id"]: event for event in received(platform, queue_url, 2)}
    assert set(events) == {registered["id"], novel["id"]}
    mirrored = events[registered["id"]]
    assert (mirrored["source"], mirrored["detail-type"]) == ("bookstore.auth", "user.registered")
    assert mirrored["detail"]["data"] == {
        "user_id": registered["data"]["user_id"],
        "email": "a@example.com",
    }
    assert events[novel["id"]]["source"] == "bookstore.catalog"
    with platform.rpc() as rpc:
        ledger = rpc.bridge.get_mirrored_event(novel["id"])
    assert ledger["status"] == "accepted" and ledger["eventbridge_id"]


def test_an_event_too_large_for_eventbridge_is_parked_with_the_reason(platform):
    huge = publish(platform, "order", "order.noted", {"note": "x" * 300_000})
    small = publish(platform, "order", "order.noted", {"note": "fine"})

    def parked():
        with platform.rpc() as rpc:
            listed = [d for d in rpc.bridge.list_dead_letters() if d["event_id"] == huge["id"]]
            assert listed, "not parked yet"
            return listed[0], rpc.bridge.get_mirrored_event(small["id"])

    dead, mirrored = eventually(parked)
    assert "too large for EventBridge" in dead["error"]
    assert dead["queue"] == "bridge-events"
    assert mirrored["status"] == "accepted"
    with platform.rpc() as rpc:
        assert rpc.bridge.get_mirrored_event(huge["id"])["status"] == "parked"
        # Replayed, it is parked again (still too large), not lost and not looped.
        assert rpc.bridge.replay_dead_letters(huge["id"])["replayed"] == 1
    again = eventually(lambda: _parked_twice(platform, huge["id"]))
    assert again["parked_count"] == 2


def _parked_twice(platform, event_id):
    with platform.rpc() as rpc:
        listed = [d for d in rpc.bridge.list_dead_letters() if d["event_id"] == event_id]
    assert len(listed) == 1 and listed[0]["parked_count"] == 2, listed
    return listed[0]
