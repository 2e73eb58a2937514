"""Problem types are defined once (gateway/problems.py) and documented twice: each as a
schema in openapi/bookstore.yaml whose ``type`` is its URN, and in docs/problems.md."""

from __future__ import annotations

from typing import Any

from common import schemas
from common.config import REPO_ROOT
from gateway import problems


def problem_schemas() -> dict[str, dict[str, Any]]:
    """URN -> the properties its schema fixes (``type``, ``status``, extensions)."""
    found = {}
    for name, schema in schemas.spec_document()["components"]["schemas"].items():
        for part in schema.get("allOf", []):
            urn = part.get("properties", {}).get("type", {}).get("const")
            if urn:
                assert urn not in found, f"{urn} has two schemas"
                found[urn] = {"name": name, **part["properties"]}
    return found


def test_every_problem_type_the_api_answers_with_has_a_schema_and_no_other():
    documented = set(problem_schemas())
    assert documented == {problems.TYPE_PREFIX + slug for slug in problems.API_PROBLEM_TYPES}


def test_each_schema_fixes_the_status_its_type_is_answered_with():
    by_urn = problem_schemas()
    for status, slug in problems.DOMAIN_ERRORS.values():
        assert by_urn[problems.TYPE_PREFIX + slug]["status"]["const"] == status, slug
    fixed = {
        problems.INVALID_REQUEST: 400,
        problems.RATE_LIMITED: 429,
        problems.SERVICE_UNAVAILABLE: 503,
        problems.SERVICE_TIMEOUT: 504,
    }
    for slug, status in fixed.items():
        assert by_urn[problems.TYPE_PREFIX + slug]["status"]["const"] == status, slug


def test_each_schema_is_reachable_from_the_response_of_its_status():
    spec = schemas.spec_document()
    responses = spec["components"]["responses"]
    referenced: dict[int, set[str]] = {}
    for operation in (
        operation
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in problems.HTTP_METHODS
    ):
        for code, response in operation["responses"].items():
            if "$ref" in response and code[0] in "45":
                media = responses[response["$ref"].rsplit("/", 1)[-1]]["content"]
                schema = media["application/problem+json"]["schema"]
                names = [ref["$ref"] for ref in schema.get("anyOf", [schema])]
                referenced.setdefault(int(code), set()).update(n.rsplit("/", 1)[-1] for n in names)
    for urn, fixed in problem_schemas().items():
        assert fixed["name"] in referenced.get(fixed["status"]["const"], set()), urn


def test_docs_list_every_problem_type():
    text = (REPO_ROOT / "docs" / "problems.md").read_text()
    for slug in problems.API_PROBLEM_TYPES | {problems.NOT_READY}:
        assert f"`{problems.TYPE_PREFIX}{slug}`" in text, slug


def test_the_documented_examples_are_valid_problems():
    for urn, fixed in problem_schemas().items():
        schema = schemas.spec_document()["components"]["schemas"][fixed["name"]]
        for example in schema.get("examples", []):
            assert example["type"] == urn
            schemas.validate(fixed["name"], example)
