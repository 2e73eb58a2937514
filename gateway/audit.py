"""Reports the tokens the gateway refuses to svc_auth's audit trail, off the request path.

Token checks run on the event loop and must not wait for a broker, so refusals go into a
bounded queue that a background thread sends in batches. Under a flood of bad tokens
the queue fills and further refusals are counted and logged, not queued: the audit trail
must not become the way to exhaust the gateway's memory.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from common import context
from common.db import isoformat, utcnow

log = logging.getLogger(__name__)

MAX_QUEUED = 1000
BATCH_SIZE = 200
BATCH_WAIT_SECONDS = 0.5


class TokenRefusalReporter:
    def __init__(self, send: Callable[[list[dict[str, Any]]], Any]) -> None:
        self._send = send
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(MAX_QUEUED)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="token-refusals", daemon=True)
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def report(self, reason: str, claimed_subject: str | None = None) -> None:
        current = context.current()
        refusal = {
            "reason": reason,
            "claimed_subject": claimed_subject,
            "client_ip": current.client_ip,
            "correlation_id": current.correlation_id,
            "occurred_at": isoformat(utcnow()),
        }
        try:
            self._queue.put_nowait(refusal)
        except queue.Full:
            self.dropped += 1
            if self.dropped % MAX_QUEUED == 1:
                log.warning(
                    "token refusals are not being audited fast enough (%d dropped)", self.dropped
                )

    def flush(self) -> None:
        """Sends whatever is queued now (the background thread does this continuously)."""
        batch: list[dict[str, Any]] = []
        while len(batch) < BATCH_SIZE:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if batch:
            try:
                self._send(batch)
            except Exception as error:  # noqa: BLE001 - auditing must not stop the thread
                log.warning("could not audit %d token refusals: %r", len(batch), error)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=BATCH_WAIT_SECONDS)
            except queue.Empty:
                continue
            self._queue.put_nowait(first)  # put back: flush takes a whole batch
            self.flush()
