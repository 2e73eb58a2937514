"""The broker topology the services need: exchanges, queues and bindings, declared
before any event is published (docs/decisions/0060).

RabbitMQ drops a message that no queue is bound to take. A consumer's queue must
therefore exist before the producer publishes, not from the moment the consumer first
starts. The list of queues is not kept by hand: it is read from the services' own
declarations, :func:`handler_queue` for every ``@reliable_event_handler`` and
``declared_queues(config)`` for any other extension that consumes events (the bridge's
mirror). ``bookstore declare-topology`` (run by ``bookstore migrate``, so by ``bin/run``,
the Helm migration hook and the ECS migrate task) declares all of it; each consumer also
declares its own queues when it starts.

Declaring is idempotent and every queue is durable, so a queue declared before its
consumer ever ran holds the events meanwhile.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Exchange, Queue
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.events import SERVICE_POOL, get_event_exchange
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR, Extension

from common import deadletters
from common.config import SERVICE_PACKAGES


def handler_queue(
    service_name: str, method_name: str, source_service: str, event_type: str, config: dict
) -> Queue:
    """The durable queue of one reliable event handler: nameko's service-pool name and
    binding, with the dead-letter route to its parking queue (common/deadletters.py)."""
    name = f"evt-{source_service}-{event_type}--{service_name}.{method_name}"
    return Queue(
        name,
        exchange=get_event_exchange(source_service, config),
        routing_key=event_type,
        durable=True,
        auto_delete=False,
        exclusive=False,
        queue_arguments=deadletters.dead_letter_arguments(name),
    )


@dataclass(frozen=True)
class Subscription:
    """One consumer's interest in one producer's events (``event_type`` may be ``#``)."""

    consumer: str
    handler: str
    source: str
    event_type: str
    queue: Queue


def service_class(service: str) -> type:
    """The nameko service class of ``service`` (its package's ``service`` module)."""
    module = importlib.import_module(f"{SERVICE_PACKAGES[service]}.service")
    for _, candidate in inspect.getmembers(module, inspect.isclass):
        if getattr(candidate, "name", None) == service and candidate.__module__ == module.__name__:
            return candidate
    raise LookupError(f"{module.__name__} has no service class named {service!r}")


def subscriptions_of(cls: type, config: dict[str, Any]) -> list[Subscription]:
    """Every event subscription a service class declares, read from its entrypoints and
    dependencies as nameko would bind them."""
    from common.consumers import ReliableEventHandler

    service_name = cls.name
    found: list[Subscription] = []
    for method_name, method in inspect.getmembers(cls, callable):
        for entrypoint in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, ReliableEventHandler):
                if entrypoint.handler_type is not SERVICE_POOL:
                    raise ValueError(f"{service_name}.{method_name}: only service-pool handlers")
                queue = handler_queue(
                    service_name,
                    method_name,
                    entrypoint.source_service,
                    entrypoint.event_type,
                    config,
                )
                found.append(
                    Subscription(
                        service_name,
                        method_name,
                        entrypoint.source_service,
                        entrypoint.event_type,
                        queue,
                    )
                )
    for attribute, value in inspect.getmembers(cls, lambda v: isinstance(v, Extension)):
        declared = getattr(value, "declared_queues", None)
        if declared is None:
            continue
        for queue in declared(service_name, config):
            for binding in queue.bindings or ():
                source = binding.exchange.name.removesuffix(".events")
                found.append(
                    Subscription(service_name, attribute, source, binding.routing_key, queue)
                )
    return found


def platform_subscriptions(
    config: dict[str, Any], services: Iterable[str] = SERVICE_PACKAGES
) -> list[Subscription]:
    """Every subscription of every service of the platform."""
    found: list[Subscription] = []
    for service in services:
        found.extend(subscriptions_of(service_class(service), config))
    return found


def declare(
    amqp_uri: str,
    queues: Iterable[Queue],
    config: dict[str, Any],
    *,
    every_exchange: bool = False,
) -> dict[str, int]:
    """Declares ``queues`` with their exchanges, bindings and parking queues, on one
    connection (and, ``every_exchange``, every producer's event exchange); returns what
    was declared, by kind."""
    queues = list(queues)
    exchanges: dict[str, Exchange] = {}
    if every_exchange:
        exchanges = {
            f"{service}.events": get_event_exchange(service, config) for service in SERVICE_PACKAGES
        }
    for queue in queues:
        if queue.exchange is not None and queue.exchange.name:
            exchanges.setdefault(queue.exchange.name, queue.exchange)
        for binding in queue.bindings or ():
            exchanges.setdefault(binding.exchange.name, binding.exchange)
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        for exchange in exchanges.values():
            exchange(channel).declare()
        deadletters.dead_letter_exchange(channel).declare()
        parked: set[str] = set()
        for queue in queues:
            queue(channel).declare()
            if queue.queue_arguments and queue.name not in parked:
                deadletters.parking_queue(queue.name)(channel).declare()
                parked.add(queue.name)
    return {"exchanges": len(exchanges), "queues": len({q.name for q in queues}) + len(parked)}


def declare_service(container: Any) -> None:
    """Declares the queues of every reliable handler of a starting service container, on
    one connection, once per container (each handler's ``setup`` asks)."""
    from common.consumers import ReliableEventHandler

    if getattr(container, _DECLARED, False):
        return
    queues = [
        handler_queue(
            container.service_name,
            entrypoint.method_name,
            entrypoint.source_service,
            entrypoint.event_type,
            container.config,
        )
        for entrypoint in container.entrypoints
        if isinstance(entrypoint, ReliableEventHandler)
    ]
    declare(container.config[AMQP_URI_CONFIG_KEY], queues, container.config)
    setattr(container, _DECLARED, True)


# Set on a container once its handlers' queues are declared.
_DECLARED = "bookstore_queues_declared"


def declare_platform(amqp_uri: str, config: dict[str, Any]) -> dict[str, int]:
    """Declares everything every service consumes (``bookstore declare-topology``)."""
    unique: dict[str, Queue] = {}
    for subscription in platform_subscriptions(config):
        unique.setdefault(subscription.queue.name, subscription.queue)
    return declare(amqp_uri, unique.values(), config, every_exchange=True)
