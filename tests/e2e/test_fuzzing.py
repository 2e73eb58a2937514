"""Property-based fuzzing of every operation in the spec, against the real platform.

Schemathesis generates valid requests and, separately, requests that break the schema
(wrong types, missing fields, out-of-range values) from openapi/bookstore.yaml. Whatever
it sends, the API must not fail (no 5xx), must answer only documented statuses and
content types, and every response must match its schema. Refusals the schema cannot
express (a stale If-Match, a reused idempotency key, an ISBN check digit) are
legitimate, so the "schema-valid data must be accepted" check is left out. Examples are
derandomised, so CI runs the same cases every time.

(Schemathesis' own pytest plugin does not work with pytest 9, hence the explicit
hypothesis test per operation.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from common.schemas import spec_document


def _cases() -> list:
    """(operationId, mode) pairs; an operation that takes no input has no negative cases."""
    cases = []
    for path_item in spec_document()["paths"].values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            takes_input = bool(
                operation.get("parameters")
                or path_item.get("parameters")
                or operation.get("requestBody")
            )
            cases.append(pytest.param(operation["operationId"], GenerationMode.POSITIVE))
            if takes_input:
                cases.append(pytest.param(operation["operationId"], GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(("operation_id", "mode"), _cases())
def test_no_request_makes_the_api_misbehave(api, operation_id, mode):
    schema = schemathesis.openapi.from_dict(spec_document())
    schema.config.update(base_url=api.platform.api)
    operation = schema.find_operation_by_id(operation_id)
    headers = {"Authorization": f"Bearer {api.admin}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def fuzz(case):
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    fuzz()
