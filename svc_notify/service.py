"""The ``notify`` nameko service: notifications, webhooks and their audit log.

Event handlers record what to send (svc_notify/notifications.py) in the transaction that
marks the event handled; the :class:`~svc_notify.dispatch.Dispatcher` sends it with
retries. The RPC methods serve the gateway (preferences, webhook admin, the audit log)
and operators.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from nameko.rpc import RpcProxy
from nameko.timer import timer

from common import deadletters, reconcile
from common.consumers import handle_once, purge_handled, reliable_event_handler
from common.context import CallContextProvider
from common.db import check_database, database
from common.errors import BookstoreError, NotFound
from common.metrics import ServiceMetrics
from common.rpc import call_with_timeout, rpc
from svc_notify import domain, erasure, notifications, preferences, recipients, webhooks
from svc_notify.dispatch import Dispatcher, backlog_health
from svc_notify.domain import CONSUMED
from svc_notify.models import Base, NotifyHandledEvent
from svc_notify.settings import Settings

log = logging.getLogger(__name__)


def _call_timeout() -> float:
    return Settings.current().call_timeout


class RpcDirectory:
    """Who to write to, from auth and order over RPC, with timeouts."""

    def __init__(self, auth: Any, order: Any) -> None:
        self._auth, self._order = auth, order

    def _call(self, method: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return call_with_timeout(method, *args, timeout=_call_timeout())
        except NotFound:
            return None
        # DependencyUnavailable is transient for every reliable handler (common.consumers):
        # retried in process, then parked for replay.

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self._call(self._auth.get_user, user_id)

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self._call(self._order.get_order, order_id)


class RpcAccounts:
    """auth's live accounts over RPC, in batches (svc_notify/recipients.py)."""

    BATCH = 1000

    def __init__(self, auth: Any) -> None:
        self._auth = auth

    def live(self, user_ids: list[str]) -> list[str]:
        live: list[str] = []
        for start in range(0, len(user_ids), self.BATCH):
            batch = user_ids[start : start + self.BATCH]
            live += call_with_timeout(self._auth.live_user_ids, batch, timeout=_call_timeout())
        return live


#: pg advisory lock held by the instance reconciling recipients.
LOCK_KEY = 0x2071F1_0141


def _consumes(method: Any) -> Any:
    """``@reliable_event_handler`` for every event type svc_notify consumes."""
    for source, event_types in CONSUMED.items():
        for event_type in event_types:
            method = reliable_event_handler(source, event_type)(method)
    return method


class NotifyService(deadletters.DeadLetterAdmin):
    name = "notify"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    dispatcher = Dispatcher()
    auth = RpcProxy("auth")
    order = RpcProxy("order")
    #: When this instance last reconciled (a dict: nameko makes a new instance per worker).
    _last_reconciled: dict[str, float] = {}

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
            return {"service": self.name, **backlog_health(session)}

    # -- events --------------------------------------------------------------------------

    @_consumes
    def on_event(self, envelope: dict[str, Any]) -> None:
        """Records the notifications and webhook calls an event causes, once."""
        recipient = domain.recipient_for(
            envelope,
            RpcDirectory(self.auth, self.order),
            admin_email=Settings.current().admin_email,
        )
        with self.db.get_session() as session:
            handled, deliveries = handle_once(
                session,
                NotifyHandledEvent,
                envelope,
                "notify.on_event",
                lambda: notifications.plan(
                    session,
                    envelope,
                    recipient,
                    web_url=Settings.current().web_url,
                    sms_templates=self.dispatcher.sms_templates,
                ),
            )
            if handled and not deliveries:
                # Nothing to send (most order and payment events): nothing to do once,
                # so no handled id to keep either; a redelivery finds nothing again.
                session.rollback()
                return
            session.commit()
        if handled:
            self.dispatcher.wake(sum(delivery.status == "pending" for delivery in deliveries))

    @reliable_event_handler("auth", "user.deleted")
    def forget_deleted_user(self, envelope: dict[str, Any]) -> None:
        """Stops what waits to be sent to a deleted account and scrubs its addresses."""
        with self.db.get_session() as session:
            erasure.forget_user(session, envelope["data"]["user_id"])
            session.commit()

    # -- preferences ---------------------------------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def get_preferences(self, user_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return preferences.get(session, user_id)

    @rpc(expected_exceptions=BookstoreError)
    def set_preferences(self, user_id: str, chosen: dict[str, Any]) -> dict[str, Any]:
        with self.db.get_session() as session:
            return preferences.put(session, user_id, chosen)

    # -- webhooks and the audit log (admins) -------------------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def create_webhook_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.db.get_session() as session:
            return webhooks.create_endpoint(
                session, request, self.dispatcher.senders.webhooks.refusal
            )

    @rpc(expected_exceptions=BookstoreError)
    def list_webhook_endpoints(
        self, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return webhooks.list_endpoints(session, cursor, limit)

    @rpc(expected_exceptions=BookstoreError)
    def get_webhook_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return webhooks.get_endpoint(session, endpoint_id)

    @rpc(expected_exceptions=BookstoreError)
    def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        with self.db.get_session() as session:
            webhooks.delete_endpoint(session, endpoint_id)

    @rpc(expected_exceptions=BookstoreError)
    def list_deliveries(
        self,
        endpoint_id: str,
        status: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return webhooks.list_deliveries(session, endpoint_id, status, cursor, limit)

    @rpc(expected_exceptions=BookstoreError)
    def get_delivery(self, delivery_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            return webhooks.get_delivery(session, delivery_id)

    @rpc(expected_exceptions=BookstoreError)
    def replay_delivery(self, delivery_id: str) -> dict[str, Any]:
        with self.db.get_session() as session:
            replayed = webhooks.replay_delivery(session, delivery_id)
        self.dispatcher.wake()
        return replayed

    @rpc(expected_exceptions=BookstoreError)
    def list_notification_attempts(
        self,
        user_id: str | None = None,
        channel: str | None = None,
        outcome: str | None = None,
        event_id: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        with self.db.get_session() as session:
            return webhooks.list_attempts(
                session,
                user_id=user_id,
                channel=channel,
                outcome=outcome,
                event_id=event_id,
                cursor=cursor,
                limit=limit,
            )

    @timer(interval=3600)
    def forget_handled_events(self) -> None:
        with self.db.get_session() as session:
            purge_handled(session, NotifyHandledEvent)

    # -- reconciliation with auth (svc_notify/recipients.py) -------------------------------

    @rpc(expected_exceptions=BookstoreError)
    def reconcile_recipients(self, repair: bool = True) -> dict[str, Any]:
        """Compares the people notify holds data of with auth's accounts and
        (``repair``) forgets those auth deleted or never had."""
        with self.db.get_session() as session:
            return recipients.reconcile_recipients(session, RpcAccounts(self.auth), repair=repair)

    @timer(interval=30)
    def reconcile_when_due(self) -> None:
        """Every NOTIFY_RECONCILE_INTERVAL seconds (0: never), one instance (an advisory
        lock) forgets the deleted accounts whose event was missed."""
        interval = Settings.current().reconcile_interval
        if not reconcile.due(self._last_reconciled, interval, time.monotonic()):
            return
        with self.db.get_session() as session:
            report = reconcile.alone(
                session,
                LOCK_KEY,
                lambda: recipients.reconcile_recipients(
                    session, RpcAccounts(self.auth), repair=True
                ),
            )
        if report is not None and not report["in_sync"]:
            log.warning("notify recipients drift repaired", extra={"reconcile": report})
