"""JSON Schema 2020-12 validation, and what crosses the wire, described once.

``openapi/bookstore.yaml`` is the single description of the REST surface. The gateway
validates HTTP requests against it (gateway/openapi31.py) and services validate their
RPC payloads against the same component schemas (:func:`validate`), so a call from
``nameko shell`` or another service meets the same rules as a REST client. Both use the
helpers here, so errors read the same and never repeat a secret back.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import yaml
from jsonschema import ValidationError
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from common.config import REPO_ROOT
from common.errors import InvalidInput

SPEC_PATH = REPO_ROOT / "openapi" / "bookstore.yaml"
_SPEC_URI = "urn:bookstore:openapi"


def validator_for(schema: dict[str, Any], registry: Registry | None = None) -> OAS31Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1 dialect) that checks formats too."""
    if registry is None:
        return OAS31Validator(schema, format_checker=oas31_format_checker)
    return OAS31Validator(schema, registry=registry, format_checker=oas31_format_checker)


def first_error(validator: OAS31Validator, instance: Any) -> ValidationError | None:
    """The most relevant error, or None. ``best_match`` picks the deepest, most specific
    error instead of a vague "is not valid under any of the given schemas"."""
    return jsonschema.exceptions.best_match(validator.iter_errors(instance))


def find_nul(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string holding a NUL character, or None. PostgreSQL
    text cannot store NUL, and no field of ours has a use for it, so it is refused up front."""
    location = nul_location(value)
    if location is None:
        return None
    dotted = ".".join(str(part) for part in (path, *location) if part != "")
    return dotted or "(value)"


def nul_location(value: Any) -> tuple[str | int, ...] | None:
    """Where (keys and indexes) the first string holding a NUL character is, or None."""
    if isinstance(value, str):
        return () if "\x00" in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return (key,)
        found = nul_location(item)
        if found is not None:
            return (key, *found)
    return None


def json_pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer to ``parts`` (``~`` and ``/`` in names escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def each_error(validator: OAS31Validator, instance: Any, limit: int = 20) -> list[ValidationError]:
    """Every failing part of ``instance`` (at most ``limit``), most relevant first, each
    narrowed as :func:`first_error` narrows the one it picks."""
    # A stable sort: among equally relevant errors the first found comes first, as in
    # best_match, so the first of these is the error first_error picks.
    errors = sorted(
        validator.iter_errors(instance), key=jsonschema.exceptions.relevance, reverse=True
    )
    return [jsonschema.exceptions.best_match([error]) for error in errors[:limit]]


def describe(error: ValidationError) -> tuple[str | None, str]:
    """(the field's dotted path or None, a message). jsonschema's messages quote the
    offending value, so for ``writeOnly`` fields (passwords) the message names only the
    rule that failed."""
    field = ".".join(str(part) for part in error.absolute_path) or None
    if isinstance(error.schema, dict) and error.schema.get("writeOnly"):
        return field, f"does not satisfy {error.validator} {error.validator_value!r}"
    return field, error.message


def error_text(error: ValidationError) -> str:
    field, message = describe(error)
    return f"{field}: {message}" if field else message


@functools.cache
def spec_document() -> dict[str, Any]:
    """``openapi/bookstore.yaml``, parsed once. Do not modify it."""
    # libyaml's loader when there is one: the pure-Python one took a second of the first
    # order's checkout (the order service validates it against the spec).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open() as spec_file:
        return yaml.load(spec_file, Loader=loader)  # noqa: S506 - a safe loader


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(_SPEC_URI, Resource(spec_document(), specification=DRAFT202012))


@functools.cache
def _component_validator(component: str) -> OAS31Validator:
    return validator_for({"$ref": f"{_SPEC_URI}#/components/schemas/{component}"}, _registry())


def validate(component: str, payload: Any) -> Any:
    """Returns ``payload`` if it matches ``components.schemas.<component>``; otherwise
    :class:`InvalidInput` naming the field."""
    if (field := find_nul(payload)) is not None:
        raise InvalidInput(f"{field}: must not contain NUL characters.", {"field": field})
    error = first_error(_component_validator(component), payload)
    if error is not None:
        field, _ = describe(error)
        raise InvalidInput(error_text(error), {"field": field} if field else {})
    return payload
