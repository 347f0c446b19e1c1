"""Catalogue and health endpoints."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cli.processes import stop
from schemas.aggregators import Aggregator
from schemas.attribution import AttributionRequest
from schemas.methods import METHOD_SPECS
from schemas.step_functions import STEP_FUNCTION_SPECS
from service.openapi import openapi_document
from tests.service.helpers import assert_problem
from tests.service.stack import stack_env, start_api


def test_models_lists_the_registry_without_paths(client: httpx.Client) -> None:
    models = {model["id"]: model for model in client.get("/v1/models").json()["models"]}
    assert {"tiny-gpt2", "tiny-llama", "tiny-t5", "tiny-bart", "smollm2-135m-instruct"} <= set(models)
    assert models["tiny-t5"]["is_encoder_decoder"] is True
    assert models["tiny-gpt2"]["is_encoder_decoder"] is False
    assert models["tiny-marian"]["is_encoder_decoder"] is None  # left to the model's config
    assert models["smollm2-135m-instruct"]["default"] is True
    assert all("path" not in model for model in models.values())


def test_methods_and_step_functions(client: httpx.Client) -> None:
    methods = client.get("/v1/methods").json()["methods"]
    assert [method["id"] for method in methods] == list(METHOD_SPECS)
    ig = next(method for method in methods if method["id"] == "integrated_gradients")
    assert ig["family"] == "gradient" and ig["parameters"]["properties"]["n_steps"]["default"] == 50
    functions = client.get("/v1/step-functions").json()["step_functions"]
    assert [function["id"] for function in functions] == list(STEP_FUNCTION_SPECS)


def test_aggregators_are_the_request_schema_s(client: httpx.Client) -> None:
    aggregators = client.get("/v1/aggregators").json()["aggregators"]
    assert [agg["id"] for agg in aggregators] == [member.value for member in Aggregator]
    assert all(agg["description"] for agg in aggregators)
    request_enum = openapi_document()["components"]["schemas"]["Aggregator"]["enum"]
    assert request_enum == [agg["id"] for agg in aggregators]


@pytest.mark.usefixtures("worker")
def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["workers"] >= 1
    assert "tiny-marian" in ready.json()["models_without_workers"]


def test_readyz_is_503_without_a_worker(redis_url: str, tiny_registry: Path, tmp_path: Path) -> None:
    # A database no worker has ever registered in.
    empty_db = redis_url.rsplit("/", 1)[0] + "/9"
    process, url = start_api(stack_env(empty_db, tiny_registry, tmp_path))
    try:
        response = httpx.get(url + "/readyz")
        body = assert_problem(response, 503, "not-ready")
        assert body["workers"] == 0
        assert int(response.headers["retry-after"]) > 0
    finally:
        stop(process, "API")


def test_redis_down_is_503(tiny_registry: Path, tmp_path: Path) -> None:
    from cli.processes import free_port

    process, url = start_api(stack_env(f"redis://127.0.0.1:{free_port()}/0", tiny_registry, tmp_path))
    try:
        response = httpx.get(url + "/v1/jobs")
        assert_problem(response, 503, "not-ready")
        assert response.headers["retry-after"]
        assert_problem(httpx.get(url + "/readyz"), 503, "not-ready")
    finally:
        stop(process, "API")


def test_aggregation_steps_are_listed_as_the_request_schema_has_them(client: httpx.Client) -> None:
    steps = {s["id"]: s for s in client.get("/v1/aggregators").json()["steps"]}
    assert list(steps) == ["scores", "subwords", "spans", "split", "slices", "pair"]
    assert all(s["description"] and s["parameters"]["properties"] for s in steps.values())
    in_requests = sorted(k for k, s in steps.items() if s["in_requests"])
    request_steps = AttributionRequest.model_json_schema()["$defs"]["AggregationOptions"]["properties"][
        "steps"
    ]
    assert in_requests == sorted(request_steps["items"]["discriminator"]["mapping"])
