"""Notifications, webhooks and the EventBridge bridge, end to end: real services, a real
SMTP server (aiosmtpd) and AWS in moto's server mode, all on loopback (tests/outside.py).

The acceptance check of issue 6 is the first test: an EventBridge rule routes
``order.paid`` to an SQS queue, a real checkout happens through the gateway, and the
event (with its id) arrives on the queue; the confirmation email arrives at the SMTP
server; a registered webhook receiver gets a correctly signed delivery.
"""

from __future__ import annotations

import json
import uuid

import requests
from sqlalchemy import text

from svc_notify.channels import SIGNATURE_HEADER, verify_signature
from tests.support import (
    WEBHOOK_SECRET,
    assert_problem,
    checkout,
    eventually,
    fill,
    order_event_data,
    publish,
    received,
    register_webhook,
    routed_queue,
    shopper,
    stocked_book,
)


def outbox_event(platform, service, event_type, resource_id) -> dict:
    with platform.engine(service).connect() as connection:
        envelope = connection.scalar(
            text(
                "SELECT envelope FROM outbox WHERE event_type = :type "
                "AND envelope->'data'->>'id' = :id"
            ),
            {"type": event_type, "id": resource_id},
        )
    assert envelope is not None
    return envelope


def attempts(api, **params) -> list[dict]:
    response = api.get("/admin/notifications", params=params, token=api.admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_paid_checkout_reaches_eventbridge_the_inbox_and_a_signed_webhook(api, receiver):
    platform = api.platform
    endpoint = register_webhook(api, receiver.url)
    with routed_queue(
        platform, {"source": ["bookstore.order"], "detail-type": ["order.paid"]}
    ) as queue_url:
        book = stocked_book(api, amount=2000)
        token, address_id = shopper(api)
        me = api.get("/me", token=token).json()
        fill(api, token, book, 2)
        placed = checkout(api, token, address_id)
        assert placed.status_code == 201, placed.text
        order = placed.json()
        paid = outbox_event(platform, "order", "order.paid", order["id"])

        # EventBridge: routed by the rule to the queue, with the event's id.
        [event] = _exactly(received(platform, queue_url), 1)
        assert event["source"] == "bookstore.order"
        assert event["detail-type"] == "order.paid"
        assert event["detail"]["id"] == paid["id"]
        assert event["detail"]["data"]["id"] == order["id"]
        assert event["detail"]["data"]["total"] == {"amount": 4000, "currency": "EUR"}

    # The confirmation email, HTML and plain text.
    [email] = eventually(lambda: _exactly(mails(platform, me["email"], "is confirmed"), 1))
    assert email["Subject"] == f"Your order {order['id'][:8]} is confirmed"
    plain = email.get_body(("plain",)).get_content()
    assert order["id"] in plain and "40.00 EUR" in plain
    assert order["id"] in email.get_body(("html",)).get_content()

    # The webhook: one delivery, signed with the endpoint's secret.
    [call] = eventually(lambda: _exactly(receiver.calls, 1))
    assert call["headers"]["Bookstore-Event-Id"] == paid["id"]
    assert call["headers"]["Bookstore-Event-Type"] == "order.paid"
    assert verify_signature(WEBHOOK_SECRET, call["headers"][SIGNATURE_HEADER], call["body"])
    assert not verify_signature("another secret!!", call["headers"][SIGNATURE_HEADER], call["body"])
    assert json.loads(call["body"])["data"]["id"] == order["id"]

    # The audit log has both, with the provider's message id and the correlation id.
    logged = eventually(lambda: _exactly(attempts(api, event_id=paid["id"]), 2))
    by_channel = {attempt["channel"]: attempt for attempt in logged}
    assert by_channel["email"]["outcome"] == "sent"
    assert by_channel["email"]["provider_message_id"] == email["Message-ID"]
    assert by_channel["email"]["user_id"] == me["id"]
    assert by_channel["email"]["template"] == "order_paid"
    assert by_channel["email"]["correlation_id"] == paid["correlation_id"]
    assert by_channel["webhook"]["response_status"] == 200
    deliveries = api.get(f"/admin/webhooks/{endpoint['id']}/deliveries", token=api.admin).json()
    assert [(d["status"], d["event_id"]) for d in deliveries["items"]] == [("sent", paid["id"])]


def mails(platform, address: str, subject_part: str) -> list:
    """What the SMTP server received for ``address`` with ``subject_part`` in the subject
    (every new customer also gets the email that verifies the address)."""
    return [m for m in platform.smtp.messages_to(address) if subject_part in m["Subject"]]


def _exactly(items: list, count: int) -> list:
    assert len(items) == count, items
    return list(items)


def test_a_failing_webhook_is_retried_then_parked_and_can_be_replayed(api, receiver):
    endpoint = register_webhook(api, receiver.url, event_types=["*"])
    receiver.answers = [500, "redirect", "hang"]
    event = publish(api.platform, "order", "order.delivered", order_event_data())

    def parked():
        items = api.get(f"/admin/webhooks/{endpoint['id']}/deliveries", token=api.admin).json()[
            "items"
        ]
        assert len(items) == 1 and items[0]["status"] == "parked", items
        return items[0]

    delivery = eventually(parked, timeout=30)
    assert delivery["attempts"] == 3
    assert delivery["last_error"] == "WebhookFailed: no answer within 1s"
    tries = sorted(attempts(api, event_id=event["id"]), key=lambda attempt: attempt["attempt"])
    assert [(t["outcome"], t["response_status"]) for t in tries] == [
        ("failed", 500),
        ("failed", 302),
        ("parked", None),
    ]
    assert "redirect to http://127.0.0.1:9/elsewhere not followed" in tries[1]["error"]
    assert len(receiver.calls) == 3
    assert len({call["headers"]["Bookstore-Delivery-Id"] for call in receiver.calls}) == 1

    # Replaying answers the delivery, pending again; the endpoint now takes it.
    replayed = api.post(f"/admin/deliveries/{delivery['id']}/replay", token=api.admin)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] in {"pending", "sent"}
    eventually(lambda: _exactly(attempts(api, event_id=event["id"], outcome="sent"), 1))
    last = receiver.calls[-1]
    assert last["headers"]["Bookstore-Event-Id"] == event["id"]
    assert verify_signature(WEBHOOK_SECRET, last["headers"][SIGNATURE_HEADER], last["body"])
    # Only parked deliveries can be replayed.
    assert_problem(api.post(f"/admin/deliveries/{delivery['id']}/replay", token=api.admin), 409)


def test_smtp_down_retries_then_parks_and_a_replay_delivers(api):
    platform = api.platform
    user_id, address = str(uuid.uuid4()), f"reset-{uuid.uuid4().hex[:8]}@example.com"
    platform.smtp.stop()
    try:
        event = publish(
            platform,
            "auth",
            "user.password_reset_requested",
            {
                "user_id": user_id,
                "email": address,
                "name": "Ada",
                "reset_token": "the-one-time-token",
                "reset_expires_at": "2026-11-23T11:00:00Z",
            },
        )
        tries = eventually(
            lambda: _exactly(attempts(api, event_id=event["id"], outcome="parked"), 1), timeout=30
        )
        assert "ConnectionRefusedError" in tries[0]["error"]
        assert len(attempts(api, event_id=event["id"], outcome="failed")) == 2
    finally:
        platform.smtp.start()
    replayed = api.post(f"/admin/deliveries/{tries[0]['delivery_id']}/replay", token=api.admin)
    assert replayed.status_code == 200, replayed.text
    [email] = eventually(lambda: _exactly(platform.smtp.messages_to(address), 1))
    assert "reset-password?token=the-one-time-token" in email.get_body(("plain",)).get_content()


def test_preferences_choose_the_channels_and_sms_goes_through_sns(api):
    book = stocked_book(api)
    token, address_id = shopper(api)
    me = api.get("/me", token=token).json()
    assert api.get("/me/notification-preferences", token=token).json() == {
        "email": True,
        "sms": False,
        "updated_at": None,
    }
    api.patch(
        "/me",
        json={"phone": "+447700900123"},
        token=token,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    chosen = api.request(
        "PUT", "/me/notification-preferences", json={"email": False, "sms": True}, token=token
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["sms"] is True and chosen.json()["email"] is False
    fill(api, token, book)
    order = checkout(api, token, address_id).json()
    paid = outbox_event(api.platform, "order", "order.paid", order["id"])
    [sms] = eventually(lambda: _exactly(attempts(api, event_id=paid["id"]), 1))
    assert (sms["channel"], sms["outcome"], sms["recipient"]) == ("sms", "sent", "+447700900123")
    assert sms["provider_message_id"]  # SNS's message id
    assert mails(api.platform, me["email"], "confirmed") == []
    # The account-security email went regardless of the preferences.
    assert mails(api.platform, me["email"], "Confirm your email address")


def test_a_template_error_or_a_missing_address_blocks_no_other_notification(api):
    token, _ = shopper(api)
    me = api.get("/me", token=token).json()
    # SMS chosen, but the account has no phone number.
    api.request(
        "PUT", "/me/notification-preferences", json={"email": True, "sms": True}, token=token
    )
    # An order.paid its contract allows (openapi/asyncapi.yaml) but without the shipping
    # line the email template shows: the template fails.
    broken = publish(
        api.platform, "order", "order.paid", order_event_data(user_id=me["id"], status="PAID")
    )
    logged = eventually(lambda: _exactly(attempts(api, event_id=broken["id"]), 2))
    by_channel = {attempt["channel"]: attempt for attempt in logged}
    assert by_channel["sms"]["outcome"] == "skipped"
    assert by_channel["sms"]["error"] == "no phone number"
    assert by_channel["email"]["outcome"] == "parked"  # at once: retrying cannot fix it
    assert by_channel["email"]["attempt"] == 1
    assert "template error in order_paid" in by_channel["email"]["error"]
    # The next notification to the same customer goes out.
    shipped = publish(
        api.platform,
        "order",
        "order.shipped",
        order_event_data(
            user_id=me["id"],
            status="SHIPPED",
            items=[],
            shipping={"amount": 0, "currency": "EUR"},
            total={"amount": 1500, "currency": "EUR"},
            shipping_address={"city": "London"},
        ),
    )
    eventually(lambda: _exactly(attempts(api, event_id=shipped["id"], outcome="sent"), 1))
    assert len(mails(api.platform, me["email"], "has shipped")) == 1


def test_ready_reports_the_backlog_and_degraded_while_emails_cannot_be_delivered(api):
    platform = api.platform
    ready = requests.get(f"{platform.base_url}/ready", timeout=10).json()
    assert ready["checks"]["notify"] == "ok"

    # An email being retried (the mail server refused it) and a failing webhook, both due
    # tomorrow so the running dispatcher leaves them alone.
    with platform.engine("notify").begin() as connection:
        for channel, error in (
            ("email", "ConnectionRefusedError: [Errno 111]"),
            ("webhook", "HTTP 500"),
        ):
            connection.execute(
                text(
                    "INSERT INTO deliveries (id, channel, event_id, event_type, status, "
                    "attempts, next_attempt_at, last_error, content) VALUES (:id, :channel, "
                    ":event, 'user.registered', 'pending', 2, now() + interval '1 day', "
                    ":error, '{}')"
                ),
                {"id": uuid.uuid4(), "channel": channel, "event": uuid.uuid4(), "error": error},
            )
    with platform.rpc() as rpc:
        ping = rpc.notify.ping()
    assert ping["backlog"] == {"email": 1, "webhook": 1}
    ready = requests.get(f"{platform.base_url}/ready", timeout=10)
    assert ready.status_code == 200, "degraded still serves"
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["notify"] == (
        "degraded: 1 email waiting to be retried (last error: ConnectionRefusedError: [Errno 111])"
    )
