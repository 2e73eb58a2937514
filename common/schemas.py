"""What crosses the wire is described once, in ``openapi/bookstore.yaml``.

Services validate their RPC payloads against the same component schemas the gateway
enforces on HTTP, so a call from ``nameko shell`` or another service meets the same
rules as a REST client. Violations become :class:`~common.errors.InvalidInput`.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import yaml
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from common.config import REPO_ROOT
from common.errors import InvalidInput

SPEC_PATH = REPO_ROOT / "openapi" / "bookstore.yaml"
_SPEC_URI = "urn:bookstore:openapi"


@functools.cache
def _registry() -> Registry:
    with SPEC_PATH.open() as spec_file:
        spec = yaml.safe_load(spec_file)
    return Registry().with_resource(_SPEC_URI, Resource(spec, specification=DRAFT202012))


@functools.cache
def _validator(component: str) -> OAS31Validator:
    schema = {"$ref": f"{_SPEC_URI}#/components/schemas/{component}"}
    return OAS31Validator(schema, registry=_registry(), format_checker=oas31_format_checker)


def validate(component: str, payload: Any) -> Any:
    """Returns ``payload`` if it matches ``components.schemas.<component>``."""
    error = jsonschema.exceptions.best_match(_validator(component).iter_errors(payload))
    if error is not None:
        field = ".".join(str(part) for part in error.absolute_path) or None
        raise InvalidInput(
            f"{field + ': ' if field else ''}{error.message}",
            {"field": field} if field else {},
        )
    return payload
