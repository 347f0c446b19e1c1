"""Bad input found by trying the API as a new user (and by fuzzing from the OpenAPI document) gets a clear
problem, never a 500: bodies that are not UTF-8, empty texts, integers beyond 64 bits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.openapi import openapi_document
from tests.service.helpers import assert_problem, queued_request


def _request_integers(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every integer a client can send: in request bodies and parameters, following `$ref`s."""
    schemas = document["components"]["schemas"]
    found: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()

    def visit(path: str, node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                name = ref.rsplit("/", 1)[-1]
                if name not in seen:
                    seen.add(name)
                    visit(name, schemas[name])
            if node.get("type") == "integer":
                found.append((path, node))
            for key, value in node.items():
                visit(f"{path}/{key}", value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(f"{path}/{i}", value)

    for route, operations in document["paths"].items():
        for verb, operation in operations.items():
            visit(f"{verb} {route}", {k: operation.get(k) for k in ("requestBody", "parameters")})
    return found


def test_every_integer_a_client_sends_is_bounded() -> None:
    fields = _request_integers(openapi_document())
    assert any("AttributionRequest" in path for path, _ in fields)
    unbounded = [path for path, node in fields if "maximum" not in node and "exclusiveMaximum" not in node]
    assert unbounded == [], f"request integers without an upper bound: {unbounded}"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"attr_pos_start": 2**70}, ["body", "attr_pos_start"]),
        ({"seed": 2**64}, ["body", "seed"]),
        ({"generation_args": {"top_k": 2**64}}, ["body", "generation_args", "top_k"]),
        (
            {"method": "integrated_gradients", "method_args": {"n_steps": 2**80}},
            ["body", "method_args", "n_steps"],
        ),
        ({"inputs": [""]}, ["body", "inputs", 0]),
        ({"inputs": ["a", ""]}, ["body", "inputs", 1]),
    ],
)
def test_out_of_range_values_are_located_422s(
    client: httpx.Client, fields: dict[str, Any], loc: list
) -> None:
    response = client.post("/v1/attributions", json=queued_request(**fields))
    body = assert_problem(response, 422, "validation-error")
    assert loc in [error["loc"] for error in body["errors"]], body


def test_a_body_that_is_not_utf8_is_a_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/attributions", content=b'{"inputs": ["\xff\xfe"]}', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "malformed-body")
