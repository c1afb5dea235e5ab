"""The README's route reference is generated from the OpenAPI document the API serves, and kept current."""

from __future__ import annotations

import json

import pytest

from functions import api
from infra import api_docs


def test_the_readme_route_reference_is_current() -> None:
    assert api_docs.main(["--check"]) == 0, "README.md's route reference is stale: run `make docs`"


def test_every_route_and_every_body_field_is_in_the_reference() -> None:
    document = json.loads(api.openapi_json())
    table = api_docs.render(document)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert f"`{method.upper()} {path}`" in table
            body = operation.get("requestBody")
            if body is None:
                continue
            schema = body["content"]["application/json"]["schema"]
            refs = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
            for ref in refs:
                if "$ref" not in ref:
                    continue
                model = document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
                for field in model.get("properties", {}):
                    assert f"`{field}`:" in table, (method, path, field)


def test_the_bodies_a_newcomer_asked_about_are_spelled_out() -> None:
    table = api_docs.render(json.loads(api.openapi_json()))
    messages = next(row for row in table.splitlines() if "`POST /threads/{thread_id}/messages`" in row)
    assert "`input`: string, required" in messages
    fork = next(row for row in table.splitlines() if "`POST /threads/{thread_id}/fork`" in row)
    assert "`at`: integer, required, min 1" in fork
    assert "`prompt_version`: integer" in fork
    launch = next(row for row in table.splitlines() if "`POST /thread`<br>" in row)
    assert "STEPFOLD_DEFAULT_AGENT" in launch


def test_a_readme_without_the_markers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no .*routes:start"):
        api_docs.updated("# no block here\n", "| table |")
