"""Every method of the catalogue through the real stack (HTTP, Redis, a worker process), on both model kinds:
listed with its parameters, run to a well-formed result, bad arguments refused where they belong."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from schemas.methods import METHOD_ARGS, METHOD_SPECS
from tests.method_args import fast_method_args
from tests.result_shape import assert_valid_result
from tests.service.helpers import assert_problem, fast_request, submit, wait_terminal


def test_every_method_is_listed_with_its_parameters(client: httpx.Client) -> None:
    listed = {m["id"]: m for m in client.get("/v1/methods").json()["methods"]}
    assert list(listed) == list(METHOD_SPECS) and len(listed) == 16
    for method_id, spec in listed.items():
        assert spec["parameters"] == METHOD_ARGS[method_id].model_json_schema()
        assert spec["family"] and spec["description"] and spec["reference"].startswith("https://")
    assert set(listed["gradient_shap"]["parameters"]["properties"]) >= {"n_samples", "stdevs", "seed"}
    assert listed["attention"]["unit_dims"] == ["heads", "layers"]
    assert listed["occlusion"]["unit_dims"] == []
    assert listed["lime"]["randomised"] is True


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-t5"])
@pytest.mark.parametrize("method", list(METHOD_SPECS))
def test_every_method_runs_on_both_model_kinds(client: httpx.Client, method: str, model: str) -> None:
    body = fast_request(
        model, method=method, method_args=fast_method_args(method), step_scores=["probability"]
    )
    job = wait_terminal(client, submit(client, body)["id"])
    assert job["status"] == "finished", job
    result = client.get(f"/v1/jobs/{job['id']}/result").json()
    assert_valid_result(result)
    [seq] = result["sequences"]
    n_steps = seq["attr_pos_end"] - seq["attr_pos_start"]
    assert len(seq["step_scores"]["probability"]) == n_steps
    if method == "dummy":
        assert seq["source_attributions"] is None and seq["target_attributions"] is None
    elif model == "tiny-t5":
        assert len(seq["source_attributions"]) == len(seq["source"])
    else:
        assert len(seq["target_attributions"]) == len(seq["target"])


@pytest.mark.parametrize(
    ("method", "args", "location"),
    [
        ("gradient_shap", {"n_samples": 0}, ["body", "method_args", "n_samples"]),
        ("lime", {"samples": 3}, ["body", "method_args", "samples"]),
        ("attention", {"heads": {"start": 3, "end": 1}}, ["body", "method_args", "heads"]),
        ("occlusion", {"sliding_window": -1}, ["body", "method_args", "sliding_window"]),
    ],
)
def test_bad_method_arguments_are_located_422s(
    client: httpx.Client, method: str, args: dict[str, Any], location: list[str]
) -> None:
    problem = assert_problem(
        client.post("/v1/attributions", json=fast_request(method=method, method_args=args)),
        422,
        "validation-error",
    )
    locations = [error["loc"] for error in problem["errors"]]
    assert any(loc[: len(location)] == location for loc in locations), locations


@pytest.mark.usefixtures("worker")
def test_an_unknown_layer_fails_the_job_listing_valid_names(client: httpx.Client) -> None:
    body = fast_request(method="layer_gradient_x_activation", method_args={"target_layer": "transformer.h.9"})
    job = wait_terminal(client, submit(client, body)["id"])
    assert job["status"] == "failed"
    assert job["error"]["status"] == 422
    assert "transformer.h.0" in job["error"]["detail"]
