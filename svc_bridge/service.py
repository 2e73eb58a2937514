"""The ``bridge`` nameko service: mirrors every domain event onto EventBridge.

The work happens in :class:`~svc_bridge.subscription.EventMirror`'s consumer thread; the
RPC methods are for operators (docs/operations.md): health, the ledger, dead letters.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nameko.timer import timer
from sqlalchemy import delete

from common import deadletters
from common.context import CallContextProvider
from common.db import check_database, database, isoformat, parse_id, utcnow
from common.errors import BookstoreError, NotFound
from common.metrics import ServiceMetrics
from common.rpc import rpc
from svc_bridge.models import Base, MirroredEvent
from svc_bridge.subscription import PARKING_QUEUE, EventMirror

#: How long the ledger remembers a mirrored event.
LEDGER_RETENTION = timedelta(days=7)


class BridgeService:
    name = "bridge"

    db = database(Base)
    call_context = CallContextProvider()
    metrics = ServiceMetrics()
    mirror = EventMirror()

    @rpc
    def ping(self) -> dict[str, Any]:
        with self.db.get_session() as session:
            check_database(session)
        return {"service": self.name, **self.mirror.health(), "event_bus": self.mirror.bus_name}

    @rpc(expected_exceptions=BookstoreError)
    def get_mirrored_event(self, event_id: str) -> dict[str, Any]:
        """What became of one event: accepted by EventBridge (with its id) or parked."""
        with self.db.get_session() as session:
            row = session.get(MirroredEvent, parse_id(event_id, "event_id"))
            if row is None:
                raise NotFound("The bridge has no record of this event.", {"event_id": event_id})
            return {
                "event_id": str(row.event_id),
                "source": row.source,
                "event_type": row.event_type,
                "status": row.status,
                "eventbridge_id": row.eventbridge_id,
                "reason": row.reason,
                "attempts": row.attempts,
                "updated_at": isoformat(row.updated_at),
            }

    @rpc
    def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return deadletters.list_parked(self.mirror.amqp_uri, PARKING_QUEUE, limit)

    @rpc
    def replay_dead_letters(self, event_id: str | None = None) -> dict[str, Any]:
        replayed = deadletters.replay(self.mirror.amqp_uri, PARKING_QUEUE, event_id)
        return {"replayed": len(replayed), "event_ids": replayed}

    @timer(interval=3600)
    def forget_old_ledger_rows(self) -> None:
        with self.db.get_session() as session:
            session.execute(
                delete(MirroredEvent).where(MirroredEvent.updated_at < utcnow() - LEDGER_RETENTION)
            )
            session.commit()
