"""Make Connexion 3.3 honestly OpenAPI 3.1.

Connexion 3.3 refuses ``openapi: 3.1.x`` (it checks specs against the 3.0 schema with
Draft 4 rules) and validates requests and responses with Draft 4 JSON Schema, which
silently ignores 3.1 keywords such as ``const``, numeric ``exclusiveMinimum``,
``prefixItems`` and ``type`` lists. This module:

* checks the spec with ``openapi-spec-validator``'s OpenAPI 3.1 validator instead
  (:func:`install`, which replaces ``OpenAPISpecification._validate_spec`` for 3.1 specs
  only; connexion is pinned and a test proves the replacement is in place), and
* provides request-body, parameter and response validators that use the OpenAPI 3.1
  dialect of JSON Schema 2020-12 (:data:`VALIDATOR_MAP`, passed to ``add_api``). A
  request they refuse is an ``urn:bookstore:problem:invalid-request`` problem whose
  ``errors`` point at each bad field (:class:`InvalidRequest`).

See docs/decisions/0003-openapi-3-1-on-connexion.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import (
    BadRequestProblem,
    InvalidSpecification,
    NonConformingResponseBody,
)
from connexion.lifecycle import ConnexionRequest
from connexion.spec import OpenAPISpecification
from connexion.validators import (
    FormDataValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    MultiPartFormDataValidator,
    ParameterValidator,
    TextResponseBodyValidator,
)
from jsonschema import ValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.types import Scope

from common.schemas import (
    describe,
    each_error,
    error_text,
    find_nul,
    first_error,
    json_pointer,
    nul_location,
    validator_for,
)
from gateway.problems import INVALID_REQUEST

_original_validate_spec = OpenAPISpecification._validate_spec


def _validate_spec(cls: type[OpenAPISpecification], spec: dict[str, Any]) -> None:
    if not str(spec.get("openapi", "")).startswith("3.1."):
        _original_validate_spec.__func__(cls, spec)
        return
    try:
        OpenAPIV31SpecValidator(spec).validate()
    except OpenAPIValidationError as error:
        raise InvalidSpecification(str(error)) from error


def install() -> None:
    """Lets connexion load OpenAPI 3.1 specs, checked against the 3.1 specification."""
    OpenAPISpecification._validate_spec = classmethod(_validate_spec)


class InvalidRequest(BadRequestProblem):
    """The request does not match the spec: a 400 ``invalid-request`` problem.

    ``errors`` has one ``{"pointer", "detail"}`` per bad field, the pointer an RFC 6901
    JSON pointer into the request seen as one document: ``{"body": ..., "query": {...},
    "path": {...}, "header": {...}, "cookie": {...}}`` (``/body/items/0/quantity``,
    ``/query/limit``). ``detail`` repeats the most relevant one for people.
    """

    problem_type = INVALID_REQUEST

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(detail=errors[0][1])
        self.ext = {"errors": [{"pointer": pointer, "detail": text} for pointer, text in errors]}


def _body_errors(validator: OAS31Validator, body: Any) -> list[tuple[str, str]]:
    found = []
    for error in each_error(validator, body):
        field, message = describe(error)
        text = f"{field}: {message}" if field else message
        for name in _unexpected_members(error) or [None]:
            path = [*error.absolute_path] if name is None else [*error.absolute_path, name]
            found.append((json_pointer("body", *path), text))
    return found


def _unexpected_members(error: ValidationError) -> list[str]:
    """The members an ``additionalProperties: false`` refused: each is a bad field of its
    own, not the object that holds it."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator != "additionalProperties" or "patternProperties" in schema:
        return []
    if not isinstance(error.instance, dict):
        return []
    return [name for name in error.instance if name not in schema.get("properties", {})]


class RequestBodyValidator(JSONRequestBodyValidator):
    """Validates JSON request bodies with JSON Schema 2020-12."""

    @property
    def _validator(self) -> OAS31Validator:
        # Connexion builds validators per request; building one costs about 4 µs.
        return validator_for(self._schema)

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        # Connexion's own parser lets a body that is not UTF-8 escape as a 500.
        raw = b"".join([chunk async for chunk in stream])
        try:
            text = raw.decode(self._encoding)
        except (UnicodeDecodeError, LookupError):
            raise InvalidRequest([("/body", f"The body is not valid {self._encoding}.")]) from None
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidRequest([("/body", f"The body is not valid JSON: {error}")]) from None
        except RecursionError:
            raise InvalidRequest([("/body", "The body nests too deeply.")]) from None

    def _validate(self, body: Any) -> dict | None:
        if not self._nullable and body is None:
            raise InvalidRequest([("/body", "Request body must not be empty")])
        if (location := nul_location(body)) is not None:
            raise InvalidRequest(
                [
                    (
                        json_pointer("body", *location),
                        f"{find_nul(body)}: must not contain NUL characters",
                    )
                ]
            )
        errors = _body_errors(self._validator, body)
        if errors:
            raise InvalidRequest(errors)
        return None


class ResponseBodyValidator(JSONResponseBodyValidator):
    """Validates JSON responses with JSON Schema 2020-12 (enabled in tests)."""

    @property
    def validator(self) -> OAS31Validator:
        return validator_for(self._schema)

    def _validate(self, body: dict) -> None:
        error = first_error(self.validator, body)
        if error is not None:
            raise NonConformingResponseBody(
                detail=f"Response body does not conform to specification. {error_text(error)}"
            )


class ParameterValidator31(ParameterValidator):
    """Validates path, query, header and cookie parameters with JSON Schema 2020-12."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        if value is not None:
            if find_nul(value) is not None:
                return f"Parameter '{param['name']}' in {parameter_type} contains a NUL character"
            if isinstance(value, float) and not math.isfinite(value):
                # "NaN" and "inf" parse as floats and slip past minimum/maximum (every
                # comparison with NaN is false); JSON has no way to send them on either.
                return f"Parameter '{param['name']}' in {parameter_type}: not a finite number"
            schema = param.get("schema", param)
            error = first_error(validator_for(schema), value)
            if error is not None:
                return f"Parameter '{param['name']}' in {parameter_type}: {error.message}"
            return None
        if param.get("required"):
            return f"Missing {parameter_type} parameter '{param['name']}'"
        return None

    def validate_request(self, request: ConnexionRequest) -> None:
        """Connexion's checks, every bad parameter reported with its pointer."""
        errors = []
        if self.strict_validation:
            extra = self.validate_query_parameter_list(
                request, security_params=self.security_query_params
            )
            errors += [
                (json_pointer("query", name), f"Extra query parameter '{name}' not in spec")
                for name in sorted(extra)
            ]
        checks = {
            "query": self.validate_query_parameter,
            "path": self.validate_path_parameter,
            "header": self.validate_header_parameter,
            "cookie": self.validate_cookie_parameter,
        }
        for location, check in checks.items():
            for param in self.parameters.get(location, []):
                if message := check(param, request):
                    errors.append((json_pointer(location, param["name"]), message))
        if errors:
            raise InvalidRequest(errors)


VALIDATOR_MAP = {
    "parameter": ParameterValidator31,
    "body": MediaTypeDict(
        {
            "*/*json": RequestBodyValidator,
            "application/x-www-form-urlencoded": FormDataValidator,
            "multipart/form-data": MultiPartFormDataValidator,
        }
    ),
    "response": MediaTypeDict(
        {
            "*/*json": ResponseBodyValidator,
            "text/plain": TextResponseBodyValidator,
        }
    ),
}
