"""Sending due deliveries: render, send, record the attempt; retry with backoff; park.

Each delivery is sent in a transaction of its own that holds its row lock (``FOR UPDATE
SKIP LOCKED``): two dispatchers (two instances of the service) never send the same
delivery at once, and if this one dies mid-send the row is due again and is retried
(at least once; webhook receivers de-duplicate on ``Bookstore-Event-Id``). Every try is
a :class:`DeliveryAttempt`, the audit log. After ``max_attempts`` failed tries, or at
once when no retry can help (a template error), the delivery is ``parked`` with the
reason: it is never dropped, and an admin can replay it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import eventlet
import jinja2
import requests
from eventlet.queue import LightQueue
from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from nameko_sqlalchemy.database import DB_URIS_KEY
from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from common.backoff import backoff_delay
from common.db import create_pinged_engine, utcnow
from svc_notify import channels
from svc_notify.domain import RetryPolicy
from svc_notify.models import Base, Delivery, DeliveryAttempt, WebhookEndpoint
from svc_notify.rendering import Renderer
from svc_notify.settings import Settings

log = logging.getLogger(__name__)

DELIVERIES_PARKED = Counter(
    "bookstore_deliveries_parked_total",
    "Emails, SMS and webhook calls given up on and parked for an operator to replay.",
    ["channel"],
)

MAX_ERROR_CHARS = 2000


@dataclass
class Sent:
    provider_message_id: str | None = None
    response_status: int | None = None


@dataclass
class Senders:
    email: channels.EmailSender
    sms: channels.SmsSender
    webhooks: channels.WebhookPoster
    renderer: Renderer = field(default_factory=Renderer)

    def send(self, session: Session, delivery: Delivery) -> Sent:
        if delivery.channel == "webhook":
            return self._call_webhook(session, delivery)
        try:
            context = delivery.content["context"]
            if delivery.channel == "email":
                rendered = self.renderer.email(delivery.template, context)
            else:
                rendered = {"text": self.renderer.sms(delivery.template, context)}
        except (jinja2.TemplateError, KeyError, TypeError, ValueError) as error:
            raise channels.PermanentFailure(
                f"template error in {delivery.template}: {type(error).__name__}: {error}"
            ) from error
        if delivery.channel == "email":
            return Sent(
                self.email.send(
                    delivery.recipient, rendered["subject"], rendered["text"], rendered["html"]
                )
            )
        return Sent(self.sms.send(delivery.recipient, rendered["text"]))

    def _call_webhook(self, session: Session, delivery: Delivery) -> Sent:
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None or not endpoint.active:
            raise channels.PermanentFailure("the webhook endpoint was deleted")
        status = self.webhooks.post(
            endpoint.url,
            endpoint.secret,
            delivery.content["body"],
            {
                "Bookstore-Event-Id": str(delivery.event_id),
                "Bookstore-Event-Type": delivery.event_type,
                "Bookstore-Delivery-Id": str(delivery.id),
            },
        )
        return Sent(response_status=status)


def send_next(session: Session, senders: Senders, policy: RetryPolicy) -> bool:
    """Sends the delivery due first, if any, and commits; returns whether there was one."""
    delivery = session.scalars(
        select(Delivery)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= utcnow())
        .order_by(Delivery.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if delivery is None:
        session.rollback()
        return False
    attempt = delivery.attempts + 1
    started = time.monotonic()
    error: BaseException | None = None
    try:
        sent = senders.send(session, delivery)
    except Exception as failure:  # noqa: BLE001 - every failure is recorded, then decided on
        error, sent = failure, Sent(response_status=getattr(failure, "status", None))
    duration_ms = int((time.monotonic() - started) * 1000)
    delivery.attempts = attempt
    if error is None:
        delivery.status, delivery.next_attempt_at, delivery.last_error = "sent", None, None
        delivery.provider_message_id = sent.provider_message_id
        if delivery.channel != "webhook":
            # A one-time token has done its job once sent; it need not sit in this table.
            delivery.content = {
                "context": {k: v for k, v in delivery.content["context"].items() if k != "token"}
            }
        outcome = "sent"
    else:
        reason = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        delivery.last_error = reason
        if policy.gives_up(attempt, permanent=isinstance(error, channels.PermanentFailure)):
            delivery.status, delivery.next_attempt_at, outcome = "parked", None, "parked"
            DELIVERIES_PARKED.labels(delivery.channel).inc()
            log.error(
                "parked %s delivery %s after %d attempt(s): %s",
                delivery.channel,
                delivery.id,
                attempt,
                reason,
            )
        else:
            delay = policy.delay(attempt)
            delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
            outcome = "failed"
            log.warning(
                "%s delivery %s failed (attempt %d of %d); retrying in %.1fs: %s",
                delivery.channel,
                delivery.id,
                attempt,
                policy.max_attempts,
                delay,
                reason,
            )
    session.add(
        DeliveryAttempt(
            delivery_id=delivery.id,
            attempt=attempt,
            outcome=outcome,
            error=delivery.last_error if error is not None else None,
            provider_message_id=sent.provider_message_id,
            response_status=sent.response_status,
            duration_ms=duration_ms,
        )
    )
    session.commit()
    return True


class Dispatcher(DependencyProvider):
    """``NOTIFY_SEND_CONCURRENCY`` green threads per instance, each sending one due
    delivery after another, polling every ``NOTIFY_POLL_SECONDS`` when none is due."""

    def __init__(self, base: type = Base) -> None:
        self.base = base
        self._threads: list[eventlet.greenthread.GreenThread] = []
        self._wakeups: LightQueue = LightQueue()

    def setup(self) -> None:
        config = self.container.config
        settings = Settings.current()
        for channel in ("email", "sms", "webhook"):
            DELIVERIES_PARKED.labels(channel)  # 0 until one is parked: on scrapes
        db_url = config[DB_URIS_KEY][f"{self.container.service_name}:{self.base.__name__}"]
        self.concurrency = settings.send_concurrency
        self._engine = create_pinged_engine(db_url, pool_size=self.concurrency, max_overflow=1)
        self._sessions = sessionmaker(bind=self._engine)
        self.poll_seconds = settings.poll_seconds
        self.policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
        )
        self.senders = Senders(
            email=channels.email_sender(settings),
            sms=channels.SnsSms(settings.aws_client("sns")),
            webhooks=channels.WebhookPoster(
                settings.webhook_timeout,
                _http_session(),
                allow_private=settings.webhook_allow_private,
                allow_loopback=settings.webhook_allow_loopback,
            ),
        )
        self.sms_templates = {path.stem for path in self.senders.renderer.directory.glob("*.sms")}
        self._running = False

    def start(self) -> None:
        self._running = True
        self._threads = [
            self.container.spawn_managed_thread(self._run) for _ in range(self.concurrency)
        ]

    def stop(self) -> None:
        self._running = False
        for _ in self._threads:
            self._wakeups.put(None)
        for thread in self._threads:
            thread.wait()
        self._engine.dispose()

    def kill(self) -> None:
        self._running = False
        for thread in self._threads:
            thread.kill()
        self._engine.dispose()

    def get_dependency(self, worker_ctx: WorkerContext) -> Dispatcher:
        return self

    def wake(self, deliveries: int | None = None) -> None:
        """``deliveries`` new ones (None: an unknown number) were committed: no need to
        wait for the next poll. One sender per delivery, at most all of them: each woken
        sender that finds nothing due costs a locking query (most events make one email
        or none, and used to wake every sender)."""
        wanted = self.concurrency if deliveries is None else min(deliveries, self.concurrency)
        for _ in range(wanted):
            self._wakeups.put(None)

    def _run(self) -> None:
        failures = 0
        while self._running:
            try:
                with self._sessions() as session:
                    sent = send_next(session, self.senders, self.policy)
                failures = 0
            except Exception:
                # The database is away: deliveries wait in it; try again later.
                failures += 1
                log.warning("dispatcher failed", exc_info=True)
                eventlet.sleep(backoff_delay(failures, base=0.5, cap=30.0))
                continue
            if not sent:
                with contextlib.suppress(eventlet.queue.Empty):
                    self._wakeups.get(timeout=self.poll_seconds)


def _http_session() -> requests.Session:
    # One per instance: connections to an endpoint are reused across deliveries.
    return requests.Session()


#: Channels whose failures are ours (our mail server, our SMS provider); a webhook that
#: keeps failing is its receiver's problem and does not make notify degraded.
OWN_CHANNELS = ("email", "sms")


def backlog_health(session: Session) -> dict[str, Any]:
    """For ``ping`` (and so ``/ready``): what waits to be sent, per channel, and
    ``degraded`` while emails or SMS are being retried (they cannot be delivered)."""
    rows = session.execute(
        select(
            Delivery.channel,
            func.count(),
            func.count().filter(Delivery.attempts > 0),
            func.max(Delivery.last_error),
        )
        .where(Delivery.status == "pending")
        .group_by(Delivery.channel)
    ).all()
    backlog = {channel: waiting for channel, waiting, _, _ in rows}
    failing = [
        f"{retrying} {channel} waiting to be retried (last error: {str(last_error)[:200]})"
        for channel, _, retrying, last_error in rows
        if channel in OWN_CHANNELS and retrying
    ]
    if failing:
        return {"status": "degraded", "detail": "; ".join(failing), "backlog": backlog}
    return {"status": "ok", "backlog": backlog}
