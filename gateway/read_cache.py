"""The read cache: public catalog reads answered from memory in each gateway worker.

What is cached (:data:`CACHEABLE_OPERATIONS`): one product, its availability, a
category, the first page of category lists, product lists and searches (no ``cursor``),
and suggestions; only ``200`` answers. These operations have no security requirement
and their answer depends on nothing but the path and query, so an entry can never carry
one customer's data to another; every private read (carts, orders, accounts) goes to
its service every time.

How entries stop being served:

* **events**: each worker consumes the catalog's events on a queue of its own
  (exclusive, auto-deleted with the connection) and drops the entries an event
  concerns (:func:`tags_for_event`); every other worker of every gateway does the same.
  A ``product.updated`` event carries the product as ``GET /products/{id}`` shows it,
  so a cached product older than the event is replaced by it rather than dropped
  (:class:`Renewal`): the next read is served the new version without waiting for an
  RPC, which was most of the staleness after another gateway's write (bench/README.md);
* **writes through this worker** drop what they change before answering, so a client
  reads its own writes even before the event arrives;
* **a short TTL** (``GATEWAY_CACHE_TTL``, seconds) bounds staleness when an event is lost;
* **a lost subscription** (the broker went away) empties the cache when it comes back:
  events may have been missed meanwhile;
* a read that was in flight while an invalidation happened is not stored (it may have
  read the old version).

The store is bounded by entries and bytes, least recently used first out, so a flood of
distinct ids cannot grow it. ``If-None-Match`` is answered from the entry's ETag (304
without an RPC), and every cacheable answer says ``Cache-Control: public, max-age=<ttl>``
so a CDN in front can do the same. A request with ``Cache-Control: no-cache`` is
answered from the service (and refreshes the entry): the switch the benchmarks use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.calls import JSONIFIER
from gateway.conditional import etag, none_match

log = logging.getLogger(__name__)

#: Every entry that lists products (lists, searches, suggestions) carries this tag.
LISTS = "lists"
CATEGORIES = "categories"

#: operationId -> how its entries are tagged: "product" (by the ``product_id`` path
#: parameter), "stock" (availability of that product), or a fixed tag.
CACHEABLE_OPERATIONS: dict[str, str] = {
    "getProduct": "product",
    "getAvailability": "stock",
    "listProducts": LISTS,
    "searchBooks": LISTS,
    "suggestSearch": LISTS,
    "listCategories": CATEGORIES,
    "getCategory": CATEGORIES,
}
#: List operations whose later pages (a ``cursor``) are not cached: only first pages
#: are popular enough to be worth the memory.
FIRST_PAGES_ONLY = frozenset({"listProducts", "searchBooks", "listCategories"})


def product_tag(product_id: str) -> str:
    return f"product:{product_id}"


def stock_tag(product_id: str) -> str:
    return f"stock:{product_id}"


#: In the last this share of its TTL, the first reader of an entry refreshes it (the
#: others are still served it): a hot entry is renewed before it expires, never missed.
REFRESH_SHARE = 0.2
#: Longest a request waits for the same read already in flight before asking itself.
JOIN_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Entry:
    body: bytes
    etag: str | None
    expires_at: float
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Renewal:
    """A newer answer an event carries for the entries of one operation with one tag
    (one product's ``getProduct``), stored in place of any older one it invalidates."""

    operation_id: str
    tag: str
    body: bytes
    etag: str
    version: int

    def renews(self, key: str, entry: Entry) -> bool:
        return key.startswith(f"{self.operation_id} ") and _version(entry.etag) < self.version


def _version(entity_tag: str | None) -> int:
    """The version a ``"<version>"`` ETag names (-1 if none: always older)."""
    try:
        return int((entity_tag or "").strip('"'))
    except ValueError:
        return -1


class ReadCache:
    """A bounded LRU of response bodies, each with an expiry and invalidation tags."""

    def __init__(self, ttl_seconds: float, max_entries: int, max_bytes: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._keys_by_tag: dict[str, set[str]] = {}
        self._refreshing: set[str] = set()
        self._bytes = 0
        #: Counts invalidations: a read that saw another value when it started may have
        #: read what was just invalidated, and is not stored.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str, now: float | None = None) -> Entry | None:
        """The entry, or None: absent, expired, or (once, to one caller) about to
        expire, so that caller refreshes it while everyone else is still served."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = time.monotonic() if now is None else now
        if entry.expires_at <= now:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        if (
            entry.expires_at - now < self.ttl_seconds * REFRESH_SHARE
            and key not in self._refreshing
        ):
            self._refreshing.add(key)
            return None
        return entry

    def put(
        self,
        key: str,
        body: bytes,
        etag: str | None,
        tags: Iterable[str],
        generation: int,
        now: float | None = None,
    ) -> bool:
        """Stores an answer read while the cache was at ``generation``; False (not
        stored) if something was invalidated since, or the body alone is too large."""
        if generation != self.generation or len(body) > self.max_bytes // 16:
            return False
        if key in self._entries:
            self._remove(key)
        self._refreshing.discard(key)
        expires_at = (time.monotonic() if now is None else now) + self.ttl_seconds
        entry = Entry(body, etag, expires_at, tuple(tags))
        self._entries[key] = entry
        self._bytes += len(body)
        for tag in entry.tags:
            self._keys_by_tag.setdefault(tag, set()).add(key)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))
        return True

    def invalidate(self, tags: Iterable[str], renewal: Renewal | None = None) -> int:
        """Drops every entry carrying one of ``tags``; returns how many. An entry that
        ``renewal`` renews is stored again with the renewal's answer instead (reads in
        flight still see a new generation: what they read may be older than both)."""
        self.generation += 1
        renewed: list[tuple[str, tuple[str, ...]]] = []
        if renewal is not None:
            for key in self._keys_by_tag.get(renewal.tag, ()):
                entry = self._entries[key]
                if renewal.renews(key, entry):
                    renewed.append((key, entry.tags))
        dropped = 0
        for tag in tags:
            for key in list(self._keys_by_tag.get(tag, ())):
                self._remove(key)
                dropped += 1
        for key, entry_tags in renewed:
            self.put(key, renewal.body, renewal.etag, entry_tags, self.generation)
        return dropped

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._keys_by_tag.clear()
        self._refreshing.clear()
        self._bytes = 0

    def _remove(self, key: str) -> None:
        self._refreshing.discard(key)
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)
        for tag in entry.tags:
            keys = self._keys_by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_tag[tag]


def _product_ids(data: dict[str, Any]) -> list[str]:
    ids = [data[name] for name in ("product_id", "id") if isinstance(data.get(name), str)]
    for item in data.get("items") or ():
        if isinstance(item, dict) and isinstance(item.get("product_id"), str):
            ids.append(item["product_id"])
    return ids


def tags_for_event(event_type: str, data: dict[str, Any]) -> list[str] | None:
    """What a catalog event changes, as cache tags; None means "anything" (an event this
    table does not know: drop everything rather than serve something stale)."""
    kind = event_type.partition(".")[0]
    if kind == "product":
        return [product_tag(data["id"]), stock_tag(data["id"]), LISTS]
    if kind == "review":
        # A review changes the product's rating, which lists and searches show too.
        return [product_tag(data["product_id"]), LISTS]
    if kind == "category":
        return [CATEGORIES, LISTS]
    if kind == "inventory":
        # Searches can filter by stock.
        return [*(stock_tag(product_id) for product_id in _product_ids(data)), LISTS]
    return None


def renewal_for_event(event_type: str, data: dict[str, Any]) -> Renewal | None:
    """The product as ``getProduct`` answers it, from a ``product.updated`` event (its
    data is that answer plus ``changed_fields``: svc_catalog/products.py), encoded as
    the gateway's handlers encode it."""
    if event_type != "product.updated" or not isinstance(data.get("version"), int):
        return None
    product = {name: value for name, value in data.items() if name != "changed_fields"}
    return Renewal(
        operation_id="getProduct",
        tag=product_tag(data["id"]),
        body=JSONIFIER.dumps(product).encode(),
        etag=etag(data["version"]),
        version=data["version"],
    )


def product_id_in(path: str) -> str:
    """The ``{product_id}`` of a ``.../products/{product_id}[/...]`` path (connexion's
    routing records the operation in the scope, but not its path parameters)."""
    _, found, rest = path.partition("/products/")
    return rest.partition("/")[0] if found else ""


def tags_for_write(operation_id: str, path: str) -> list[str]:
    """What a write through this gateway changes (read-your-writes, before the event)."""
    product_id = product_id_in(path)
    if operation_id in (
        "updateProduct",
        "deleteProduct",
        "confirmImageUpload",
        "reorderProductImages",
        "deleteProductImage",
    ):
        return [product_tag(product_id), stock_tag(product_id), LISTS]
    if operation_id == "setStock":
        return [stock_tag(product_id), LISTS]
    if operation_id == "createReview":
        return [product_tag(product_id), LISTS]
    if operation_id == "createProduct":
        return [LISTS]
    if operation_id == "createCategory":
        return [CATEGORIES, LISTS]
    return []


#: The spec's limit on ``If-None-Match`` (getProduct's header parameter).
MAX_IF_NONE_MATCH = 1024

#: The catalog's event exchange (nameko's ``<service>.events``), and what we listen to.
CATALOG_EVENTS_EXCHANGE = "catalog.events"
CATALOG_EVENT_KEYS = ("product.*", "inventory.*", "category.*", "review.*")


class EventSubscription:
    """Consumes the catalog's events on a queue of this worker's own and invalidates.

    Registered as a connect callback of the worker's AMQP client, so it comes back with
    every reconnection; a new subscription first empties the cache, because events may
    have gone by while there was none."""

    def __init__(self, cache: ReadCache) -> None:
        self.cache = cache
        self.events_seen = 0

    async def subscribe(self, connection: AbstractConnection) -> None:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            CATALOG_EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in CATALOG_EVENT_KEYS:
            await queue.bind(exchange, key)
        await queue.consume(self._on_message, no_ack=True)
        self.cache.clear()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.events_seen += 1
        try:
            envelope = orjson.loads(message.body)
            event_type = envelope.get("type") or message.routing_key or ""
            data = envelope.get("data") or {}
            tags = tags_for_event(event_type, data)
            renewal = renewal_for_event(event_type, data)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as error:
            log.warning("an event the read cache cannot read: %r; emptying it", error)
            tags = None
        if tags is None:
            self.cache.clear()
        else:
            self.cache.invalidate(tags, renewal)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class ReadCacheMiddleware:
    """Answers cacheable reads from the cache; stores their 200 answers; invalidates
    after writes. Sits after routing and rate limiting, before security and validation:
    a hit skips both, which is safe because only public operations are cached and the
    key is the exact path and query of a request that passed validation before."""

    def __init__(self, app: ASGIApp, cache: ReadCache) -> None:
        self.app = app
        self.cache = cache
        self._in_flight: dict[str, asyncio.Event] = {}
        # With an ETag a shared cache may keep the answer but asks again each time
        # (a 304 from memory here): never staler than ours. Without one (lists) it may
        # serve it for the TTL, the staleness we accept ourselves when an event is lost.
        self.revalidate = b"public, no-cache"
        self.cache_control = f"public, max-age={max(0, int(cache.ttl_seconds))}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        operation_id = routing.get("operation_id")
        if scope["type"] != "http" or operation_id is None:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await self._write(scope, receive, send, operation_id)
            return
        tagging = CACHEABLE_OPERATIONS.get(operation_id)
        query = scope.get("query_string", b"")
        if tagging is None or (operation_id in FIRST_PAGES_ONLY and b"cursor=" in query):
            await self.app(scope, receive, send)
            return
        key = f"{operation_id} {scope['path']}?{query.decode('latin-1')}"
        if_none_match = _header(scope, b"if-none-match")
        if if_none_match is not None and (
            len(if_none_match) > MAX_IF_NONE_MATCH or b"\x00" in if_none_match
        ):
            # Not ours to judge: the spec's validation refuses it, further in.
            await self.app(scope, receive, send)
            return
        request_cache_control = _header(scope, b"cache-control") or b""
        tags = self._tags(tagging, scope["path"])
        if b"no-cache" in request_cache_control:
            await self._fill(scope, receive, send, key, tags)
            return
        entry = self.cache.get(key)
        if entry is None and (in_flight := self._in_flight.get(key)) is not None:
            # The same read is already on its way to the service: wait for its answer
            # rather than send another (a popular entry expiring under load).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(in_flight.wait(), JOIN_WAIT_SECONDS)
            entry = self.cache.get(key)
        if entry is not None:
            await self._answer(scope, send, entry)
            return
        done = self._in_flight.setdefault(key, asyncio.Event())
        try:
            await self._fill(scope, receive, send, key, tags)
        finally:
            if self._in_flight.get(key) is done:
                del self._in_flight[key]
            done.set()

    @staticmethod
    def _tags(tagging: str, path: str) -> list[str]:
        product_id = product_id_in(path)
        if tagging == "product":
            return [product_tag(product_id)]
        if tagging == "stock":
            return [stock_tag(product_id), product_tag(product_id)]
        return [tagging]

    def _cache_control(self, etag: object) -> bytes:
        return self.cache_control if etag is None else self.revalidate

    async def _answer(self, scope: Scope, send: Send, entry: Entry) -> None:
        headers = [(b"cache-control", self._cache_control(entry.etag))]
        if entry.etag is not None:
            headers.append((b"etag", entry.etag.encode()))
            if_none_match = _header(scope, b"if-none-match")
            if if_none_match and none_match(if_none_match.decode("latin-1"), entry.etag):
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(entry.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else entry.body
        await send({"type": "http.response.body", "body": body})

    async def _fill(
        self, scope: Scope, receive: Receive, send: Send, key: str, tags: list[str]
    ) -> None:
        generation = self.cache.generation
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send_and_keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                if message["status"] in (200, 304):
                    headers = message.get("headers", [])
                    etag = next((v for k, v in headers if k.lower() == b"etag"), None)
                    message["headers"] = [
                        *headers,
                        (b"cache-control", self._cache_control(etag)),
                    ]
            elif message["type"] == "http.response.body" and start.get("status") == 200:
                chunks.append(message.get("body", b""))
                if not message.get("more_body") and scope["method"] == "GET":
                    etag = next(
                        (v for k, v in start.get("headers", []) if k.lower() == b"etag"), None
                    )
                    self.cache.put(
                        key,
                        b"".join(chunks),
                        etag.decode("latin-1") if etag is not None else None,
                        tags,
                        generation,
                    )
            await send(message)

        await self.app(scope, receive, send_and_keep)

    async def _write(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        operation_id: str,
    ) -> None:
        tags = tags_for_write(operation_id, scope["path"])
        if not tags:
            await self.app(scope, receive, send)
            return

        async def send_after_invalidating(message: Message) -> None:
            # Before the client sees the answer, so its next read here sees the write.
            if message["type"] == "http.response.start" and message["status"] < 400:
                self.cache.invalidate(tags)
            await send(message)

        try:
            await self.app(scope, receive, send_after_invalidating)
        finally:
            # A failed or timed-out write may still have happened.
            self.cache.invalidate(tags)
