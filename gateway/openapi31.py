"""Make Connexion 3.3 honestly OpenAPI 3.1.

Connexion 3.3 refuses ``openapi: 3.1.x`` (it checks specs against the 3.0 schema with
Draft 4 rules) and validates requests and responses with Draft 4 JSON Schema, which
silently ignores 3.1 keywords such as ``const``, numeric ``exclusiveMinimum``,
``prefixItems`` and ``type`` lists. This module:

* checks the spec with ``openapi-spec-validator``'s OpenAPI 3.1 validator instead
  (:func:`install`, which replaces ``OpenAPISpecification._validate_spec`` for 3.1 specs
  only; connexion is pinned and a test proves the replacement is in place), and
* provides request-body, parameter and response validators that use the OpenAPI 3.1
  dialect of JSON Schema 2020-12 (:data:`VALIDATOR_MAP`, passed to ``add_api``).

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
from connexion.spec import OpenAPISpecification
from connexion.validators import (
    FormDataValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    MultiPartFormDataValidator,
    ParameterValidator,
    TextResponseBodyValidator,
)
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.types import Scope

from common.schemas import error_text, find_nul, first_error, validator_for

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
            raise BadRequestProblem(detail=f"The body is not valid {self._encoding}.") from None
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise BadRequestProblem(detail=f"The body is not valid JSON: {error}") from None
        except RecursionError:
            raise BadRequestProblem(detail="The body nests too deeply.") from None

    def _validate(self, body: Any) -> dict | None:
        if not self._nullable and body is None:
            raise BadRequestProblem(detail="Request body must not be empty")
        if (field := find_nul(body)) is not None:
            raise BadRequestProblem(detail=f"{field}: must not contain NUL characters")
        error = first_error(self._validator, body)
        if error is not None:
            raise BadRequestProblem(detail=error_text(error))
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
