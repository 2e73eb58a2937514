"""The event contract: ``openapi/asyncapi.yaml`` (AsyncAPI 3.0), read at run time.

The document lists every event type the services publish, one message per type and
version, each with the JSON Schema of the envelope and its ``data`` (docs/decisions/
0061). This module answers two questions from it:

- **at publish** (:func:`check_published`, called by ``Outbox.add``): with
  ``BOOKSTORE_EVENT_CONTRACT=enforce`` (the test platform sets it) an event whose type
  the document does not list, or whose envelope breaks its schema, is refused with
  :class:`ContractViolation`: the change that wrote it fails, so a test finds it;
- **at consume** (:func:`violation`, called by every reliable handler, always): an
  envelope that breaks the schema of a known type, or whose version the handler does not
  accept, is parked with the reason instead of reaching the handler.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from common.config import REPO_ROOT

CONTRACT_PATH = REPO_ROOT / "openapi" / "asyncapi.yaml"
_URI = "urn:bookstore:asyncapi"
ENFORCE_ENV = "BOOKSTORE_EVENT_CONTRACT"


class ContractViolation(ValueError):
    """An event that its contract does not allow."""


@dataclass(frozen=True)
class EventType:
    """One published event type and version, as the document describes it."""

    name: str
    version: int
    producer: str
    message_id: str
    eventbridge: dict[str, str]
    consumers: list[dict[str, Any]] = field(default_factory=list)


@functools.cache
def document() -> dict[str, Any]:
    # libyaml's loader when there is one: the pure-Python one takes most of a second.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with CONTRACT_PATH.open() as contract:
        return yaml.load(contract, Loader=loader)  # noqa: S506 - a safe loader


@functools.cache
def event_types() -> dict[tuple[str, int], EventType]:
    """Every (type, version) some service publishes, with producer and consumers."""
    doc = document()
    found: dict[tuple[str, int], EventType] = {}
    for channel in doc["channels"].values():
        for ref in channel["messages"].values():
            message_id = ref["$ref"].rsplit("/", 1)[1]
            message = doc["components"]["messages"][message_id]
            key = (message["name"], int(message["x-version"]))
            found[key] = EventType(
                message["name"],
                key[1],
                channel["x-producer"],
                message_id,
                message["x-eventbridge"],
            )
    for operation in doc["operations"].values():
        if operation["action"] != "receive":
            continue
        for ref in operation["messages"]:
            message_id = ref["$ref"].rsplit("/", 1)[1]
            message = doc["components"]["messages"][message_id]
            found[(message["name"], int(message["x-version"]))].consumers.append(operation)
    return found


def preload() -> None:
    """Reads the document now (a service's start) rather than in its first event."""
    for known in event_types().values():
        _validator(known.message_id)


def published_types() -> set[str]:
    return {name for name, _ in event_types()}


@functools.cache
def _validator(message_id: str) -> Draft7Validator:
    registry = Registry().with_resource(_URI, Resource(document(), specification=DRAFT7))
    return Draft7Validator(
        {"$ref": f"{_URI}#/components/messages/{message_id}/payload"},
        registry=registry,
        format_checker=Draft7Validator.FORMAT_CHECKER,
    )


def violation(envelope: Any, accepted_versions: tuple[int, ...] | None = None) -> str | None:
    """Why ``envelope`` breaks the contract, or None. Unknown types are not judged here
    (a consumer only binds types the contract lists: tests/unit/test_event_contract.py)."""
    if not isinstance(envelope, dict):
        return "the body is not an event envelope"
    version = envelope.get("version")
    if accepted_versions is not None and version not in accepted_versions:
        accepted = ", ".join(str(v) for v in accepted_versions)
        return f"version {version!r} of {envelope.get('type')!r} is not accepted (only {accepted})"
    known = event_types().get((envelope.get("type"), version))
    if known is None:
        return None
    return _first_error(known, envelope)


def _first_error(known: EventType, envelope: dict[str, Any]) -> str | None:
    errors = sorted(_validator(known.message_id).iter_errors(envelope), key=lambda e: e.path)
    if not errors:
        return None
    where = "/".join(str(part) for part in errors[0].absolute_path) or "(envelope)"
    return f"{known.message_id} at {where}: {errors[0].message}"


def enforced() -> bool:
    return os.environ.get(ENFORCE_ENV, "").strip().lower() == "enforce"


def check_published(envelope: dict[str, Any]) -> None:
    """Refuses, when enforced, an event the contract does not list or allow."""
    if not enforced():
        return
    known = event_types().get((envelope["type"], envelope["version"]))
    if known is None:
        raise ContractViolation(
            f"{envelope['type']!r} version {envelope['version']} is not in {CONTRACT_PATH.name}"
        )
    if known.producer != envelope["source"]:
        raise ContractViolation(f"{envelope['type']!r} is published by {known.producer}")
    problem = _first_error(known, envelope)
    if problem:
        raise ContractViolation(problem)
