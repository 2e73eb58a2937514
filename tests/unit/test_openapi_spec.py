"""openapi/bookstore.yaml is the single source of the REST surface: valid OpenAPI 3.1,
complete enough for SDK generators, and every operation wired to a handler."""

from __future__ import annotations

import copy

import inflection
import pytest
import yaml
from connexion.exceptions import InvalidSpecification
from connexion.spec import OpenAPISpecification, Specification
from openapi_spec_validator import OpenAPIV31SpecValidator

from common import schemas
from common.schemas import SPEC_PATH
from gateway import openapi31
from gateway.app import HANDLER_MODULES, HandlerResolver

METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def spec() -> dict:
    with SPEC_PATH.open() as spec_file:
        return yaml.safe_load(spec_file)


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_spec_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(spec).validate()


def test_connexion_alone_refuses_3_1_which_is_why_we_replace_its_check(spec):
    with pytest.raises(InvalidSpecification):
        openapi31._original_validate_spec.__func__(OpenAPISpecification, copy.deepcopy(spec))


def test_patched_connexion_loads_the_spec_and_still_refuses_broken_3_1(spec):
    openapi31.install()
    assert Specification.from_dict(copy.deepcopy(spec)).version == (3, 1, 0)
    broken = copy.deepcopy(spec)
    broken["components"]["schemas"]["Money"]["properties"]["amount"]["type"] = "integr"
    with pytest.raises(InvalidSpecification):
        Specification.from_dict(broken)


def test_every_operation_is_documented_for_sdk_users(spec):
    seen = set()
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        assert operation.get("operationId"), where
        assert operation["operationId"] not in seen, f"duplicate operationId at {where}"
        seen.add(operation["operationId"])
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        errors = {code for code in operation["responses"] if code.startswith(("4", "5"))}
        assert errors, f"{where} documents no error responses"
        assert "503" in errors and "504" in errors, f"{where}: services can be unavailable"


def test_every_operation_has_a_handler_and_every_handler_an_operation(spec):
    resolver = HandlerResolver(HANDLER_MODULES)
    used = set()
    for _path, _method, operation in operations(spec):
        resolver.resolve_function_from_operation_id(operation["operationId"])
        used.add(inflection.underscore(operation["operationId"]))
    assert set(resolver.handlers) == used


def test_every_request_body_has_an_example_that_the_gateway_would_accept(spec):
    # Swagger UI pre-fills the example and SDK docs show it: a wrong one misleads.
    for path, method, operation in operations(spec):
        if "requestBody" not in operation:
            continue
        where = f"{method.upper()} {path}"
        examples = []
        for media in operation["requestBody"]["content"].values():
            name = media["schema"]["$ref"].rsplit("/", 1)[-1]
            examples += [(name, example["value"]) for example in media.get("examples", {}).values()]
        assert examples, f"{where}: no request body example"
        for name, value in examples:
            schemas.validate(name, value)  # raises InvalidInput naming the field


def test_request_bodies_refuse_unknown_fields(spec):
    schemas = spec["components"]["schemas"]
    for _path, _method, operation in operations(spec):
        if "webhooks" in operation.get("tags", []):
            continue  # a provider's own format, which we do not control: signed instead
        for media in operation.get("requestBody", {}).get("content", {}).values():
            name = media["schema"]["$ref"].rsplit("/", 1)[-1]
            schema = schemas[name]
            # unevaluatedProperties is the 3.1 way for schemas composed with allOf.
            closed = schema.get("additionalProperties", schema.get("unevaluatedProperties"))
            assert closed is False, name


def test_secured_operations_name_the_scopes_they_need(spec):
    for path, method, operation in operations(spec):
        if path.endswith("/reviews") and method == "post":
            # Customers review books they bought (the catalog checks they did).
            assert operation["security"] == [{"bearerAuth": ["write:orders"]}], path
        elif method != "get" and path.startswith(("/products", "/categories")):
            assert operation["security"] == [{"bearerAuth": ["admin:catalog"]}], path


def test_non_finite_numbers_are_refused_as_parameters():
    # "NaN" parses as a float that passes minimum/maximum (every comparison with NaN is
    # false) and then travels as JSON null: it must be refused at the gateway.
    from gateway.openapi31 import ParameterValidator31

    param = {"name": "rating_min", "schema": {"type": "number", "minimum": 1, "maximum": 5}}
    for value in (float("nan"), float("inf"), float("-inf")):
        error = ParameterValidator31.validate_parameter("query", value, param)
        assert error == "Parameter 'rating_min' in query: not a finite number"
    assert ParameterValidator31.validate_parameter("query", 4.5, param) is None


def test_every_scope_a_requirement_names_is_declared_and_granted_by_a_role(spec):
    # bearerAuth is an http scheme, which has no `flows` to list scopes in: they are
    # declared in its x-scopes (which is why .spectral.yaml turns off the oauth2-only rule).
    from svc_auth.roles import ROLE_SCOPES

    declared = set(spec["components"]["securitySchemes"]["bearerAuth"]["x-scopes"])
    assert declared == {scope for scopes in ROLE_SCOPES.values() for scope in scopes}
    for path, method, operation in operations(spec):
        for requirement in operation.get("security", spec.get("security", [])):
            for scheme, scopes in requirement.items():
                assert scheme in spec["components"]["securitySchemes"], f"{method} {path}"
                assert set(scopes) <= declared, f"{method.upper()} {path}: {scopes}"


def _examples(spec: dict, schema: dict) -> list[tuple[str, object]]:
    """(component name, example) for a response schema: its own examples, or those of
    the component it names, or those of every alternative of a oneOf/anyOf."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [
            (name, example) for example in spec["components"]["schemas"][name].get("examples", [])
        ]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            found = [_examples(spec, option) for option in schema[key]]
            return [pair for pairs in found for pair in pairs] if all(found) else []
    return []


def test_every_success_response_has_an_example_that_matches_it(spec):
    # Swagger UI, Redoc and SDK docs show them: a 2xx without one leaves readers guessing.
    checked = 0
    for path, method, operation in operations(spec):
        for code, response in operation["responses"].items():
            if not code.startswith("2"):
                continue
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
            for media_type, media in response.get("content", {}).items():
                where = f"{method.upper()} {path} {code} {media_type}"
                if "example" in media or "examples" in media:
                    continue
                examples = _examples(spec, media["schema"])
                assert examples, f"{where}: no example"
                for name, example in examples:
                    schemas.validate(name, example)  # raises InvalidInput naming the field
                    checked += 1
    assert checked > 50
