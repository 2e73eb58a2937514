"""Domain events as EventBridge entries, sent in batches; only failed entries are retried.

Plain Python over a boto3 ``events`` client (or anything with its ``put_events``), so the
rules are unit-tested with a fake client that throttles or fails entries on demand
(moto does not simulate either). docs/decisions/0041-eventbridge-bridge.md says why.

- An entry is ``source`` = ``bookstore.<service>``, ``detail-type`` = the event type and
  ``detail`` = the whole envelope (its ``id`` lets AWS consumers de-duplicate), with
  secret fields removed (:func:`common.events.redact_secrets`).
- A batch holds at most :data:`MAX_ENTRIES` entries and :data:`MAX_REQUEST_BYTES`, sized
  the way EventBridge sizes them. An entry too large on its own is parked at once: no
  retry can make it fit.
- After a call, entries EventBridge accepted are done; entries that failed for a reason
  waiting can cure (throttling, an internal failure) are sent again, alone, after an
  exponential backoff with full jitter, up to ``max_attempts``; then they are parked
  with the reason. An entry refused for what it is (malformed detail, say) is parked at
  once.
- When EventBridge cannot be reached at all, :class:`EventBridgeUnavailable` carries what
  was settled so far; the caller keeps the rest unacknowledged and tries again later.
  Parking a whole outage's events would only make an operator replay them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from common.backoff import backoff_delay
from common.events import redact_secrets

log = logging.getLogger(__name__)

#: PutEvents limits (docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html).
MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
# EventBridge counts a Time field as 14 bytes, whatever its text.
TIME_BYTES = 14

#: Entry error codes that another try can cure; any other code is about the entry itself.
RETRYABLE_ENTRY_ERRORS = frozenset({"InternalFailure", "ThrottlingException"})
#: Whole-call errors that mean "slow down / try again" rather than "cannot reach it".
RETRYABLE_CALL_ERRORS = frozenset(
    {
        "ThrottlingException",
        "InternalException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)


def to_entry(service: str, envelope: dict[str, Any], bus_name: str) -> dict[str, Any]:
    """The PutEvents entry for one envelope published by ``service``."""
    entry: dict[str, Any] = {
        "Source": f"bookstore.{service}",
        "DetailType": str(envelope["type"]),
        "Detail": json.dumps(redact_secrets(envelope), separators=(",", ":"), ensure_ascii=False),
        "EventBusName": bus_name,
    }
    # Without a readable time, EventBridge stamps the entry on arrival.
    with contextlib.suppress(KeyError, ValueError):
        entry["Time"] = datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00"))
    return entry


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it against the 256 KB limit."""
    size = TIME_BYTES if "Time" in entry else 0
    for field in ("Source", "DetailType", "Detail"):
        size += len(entry.get(field, "").encode())
    size += sum(len(resource.encode()) for resource in entry.get("Resources", ()))
    return size


@dataclass
class Item:
    """One event to mirror; ``key`` is the caller's handle on it (its AMQP message)."""

    key: Any
    service: str
    envelope: dict[str, Any]


@dataclass
class Outcome:
    key: Any
    event_id: str
    accepted: bool
    #: EventBridge's id for the accepted entry.
    eventbridge_id: str | None = None
    #: Why it was parked (``accepted`` False).
    reason: str | None = None
    attempts: int = 0


class EventBridgeUnavailable(Exception):
    """EventBridge could not be reached; ``settled`` holds the outcomes decided before."""

    def __init__(self, message: str, settled: list[Outcome]) -> None:
        super().__init__(message)
        self.settled = settled


@dataclass
class _Pending:
    item: Item
    entry: dict[str, Any]
    size: int


def batches(pending: Sequence[_Pending]) -> Iterator[list[_Pending]]:
    """Consecutive batches of at most MAX_ENTRIES entries and MAX_REQUEST_BYTES."""
    batch: list[_Pending] = []
    size = 0
    for one in pending:
        if batch and (len(batch) == MAX_ENTRIES or size + one.size > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(one)
        size += one.size
    if batch:
        yield batch


class Mirror:
    """Sends items to one bus; see the module docstring for the rules."""

    def __init__(
        self,
        client: Any,
        bus_name: str,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.bus_name = bus_name
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.jitter = jitter

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random delay up to the exponential bound, so many bridges
        throttled at once do not all come back at the same moment."""
        return backoff_delay(attempt, base=self.base_delay, cap=self.max_delay, rand=self.jitter)

    def send(self, items: Iterable[Item]) -> list[Outcome]:
        """Outcomes in the order of ``items``: each accepted or parked with a reason."""
        items = list(items)
        settled: dict[int, Outcome] = {}
        pending: list[_Pending] = []
        for item in items:
            event_id = str(item.envelope.get("id"))
            try:
                entry = to_entry(item.service, item.envelope, self.bus_name)
            except (KeyError, TypeError, ValueError) as error:
                settled[id(item)] = Outcome(
                    item.key, event_id, False, reason=f"not an event envelope: {error!r}"
                )
                continue
            size = entry_size(entry)
            if size > MAX_REQUEST_BYTES:
                settled[id(item)] = Outcome(
                    item.key,
                    event_id,
                    False,
                    reason=f"too large for EventBridge: {size} bytes, the limit is "
                    f"{MAX_REQUEST_BYTES}",
                )
            else:
                pending.append(_Pending(item, entry, size))
        attempt = 1
        while pending:
            failed: list[tuple[_Pending, str]] = []
            for batch in batches(pending):
                try:
                    failed.extend(self._put(batch, attempt, settled))
                except EventBridgeUnavailable as error:
                    error.settled = [settled[id(item)] for item in items if id(item) in settled]
                    raise
            if not failed:
                break
            if attempt >= self.max_attempts:
                for one, reason in failed:
                    settled[id(one.item)] = Outcome(
                        one.item.key,
                        str(one.item.envelope.get("id")),
                        False,
                        reason=f"{reason} (gave up after {attempt} attempts)",
                        attempts=attempt,
                    )
                break
            delay = self.backoff(attempt)
            log.warning(
                "EventBridge refused %d of the entries for now (%s); retrying them in %.2fs",
                len(failed),
                failed[0][1],
                delay,
            )
            self.sleep(delay)
            attempt += 1
            pending = [one for one, _ in failed]
        return [settled[id(item)] for item in items]

    def _put(
        self, batch: list[_Pending], attempt: int, settled: dict[int, Outcome]
    ) -> list[tuple[_Pending, str]]:
        """Sends one batch; records what is settled; returns the entries to retry."""
        try:
            response = self.client.put_events(Entries=[one.entry for one in batch])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in RETRYABLE_CALL_ERRORS:
                return [(one, f"{code}: {error}") for one in batch]
            raise EventBridgeUnavailable(f"PutEvents failed: {error}", []) from error
        except BotoCoreError as error:  # endpoint unreachable, connection dropped, timeout
            raise EventBridgeUnavailable(f"EventBridge unreachable: {error}", []) from error
        retry: list[tuple[_Pending, str]] = []
        for one, result in zip(batch, response.get("Entries", []), strict=False):
            event_id = str(one.item.envelope.get("id"))
            if result.get("EventId"):
                settled[id(one.item)] = Outcome(
                    one.item.key, event_id, True, eventbridge_id=result["EventId"], attempts=attempt
                )
                continue
            reason = f"{result.get('ErrorCode')}: {result.get('ErrorMessage')}"
            if result.get("ErrorCode") in RETRYABLE_ENTRY_ERRORS:
                retry.append((one, reason))
            else:
                settled[id(one.item)] = Outcome(
                    one.item.key, event_id, False, reason=reason, attempts=attempt
                )
        # An answer with fewer results than entries: the missing ones did not go through.
        for one in batch[len(response.get("Entries", [])) :]:
            retry.append((one, "no result for the entry"))
        return retry
