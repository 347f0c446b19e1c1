"""Step functions and contrastive attribution through the real stack (HTTP, Redis, a worker process)."""

from __future__ import annotations

import httpx
import pytest

from schemas.step_functions import STEP_FUNCTION_SPECS
from tests.result_shape import assert_valid_result
from tests.service.helpers import assert_problem, fast_request, submit, wait_terminal


def test_step_functions_are_listed_with_their_arguments(client: httpx.Client) -> None:
    listed = {f["id"]: f for f in client.get("/v1/step-functions").json()["step_functions"]}
    assert list(listed) == list(STEP_FUNCTION_SPECS) and len(listed) == 14
    assert listed["top_p_size"]["attributable"] is False
    assert listed["kl_divergence"]["contrastive"] is True
    assert set(listed["kl_divergence"]["parameters"]["properties"]) == {
        "contrast_force_inputs",
        "top_k",
        "top_p",
        "min_tokens_to_keep",
    }
    assert listed["top_p_size"]["parameters"]["required"] == ["top_p"]


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("model", "contrast"), [("tiny-gpt2", "The cat sat on the mat."), ("tiny-t5", "Hello")]
)
def test_contrastive_job_runs_end_to_end(client: httpx.Client, model: str, contrast: str) -> None:
    body = fast_request(
        model,
        attributed_fn="contrast_prob_diff",
        contrast_targets=[contrast],
        step_scores=["contrast_prob", "kl_divergence", "mc_dropout_prob_avg"],
        step_scores_args={"kl_divergence": {"top_k": 10}, "mc_dropout_prob_avg": {"seed": 1}},
    )
    job = wait_terminal(client, submit(client, body)["id"])
    assert job["status"] == "finished", job
    assert job["request"]["step_scores_args"]["kl_divergence"]["top_p"] == 1.0  # stored with defaults
    result = client.get(f"/v1/jobs/{job['id']}/result").json()
    assert_valid_result(result)
    [seq] = result["sequences"]
    n_steps = seq["attr_pos_end"] - seq["attr_pos_start"]
    assert len(seq["contrast_positions"]) == n_steps and seq["contrast_target"]
    assert all(len(values) == n_steps for values in seq["step_scores"].values())
    assert result["info"]["attributed_fn_args"] == {"contrast_force_inputs": False, "logprob": False}


@pytest.mark.usefixtures("worker")
def test_an_alignment_that_does_not_fit_fails_the_job_with_a_422_problem(client: httpx.Client) -> None:
    body = fast_request(
        attributed_fn="pcxmi", contrast_targets=["The cat sat"], contrast_targets_alignments=[[[3, 40]]]
    )
    job = wait_terminal(client, submit(client, body)["id"])
    assert job["status"] == "failed"
    assert job["error"]["status"] == 422 and "(3, 40) does not fit" in job["error"]["detail"]


def test_unknown_step_score_argument_is_a_located_422(client: httpx.Client) -> None:
    body = fast_request(step_scores=["entropy", "top_p_size"], step_scores_args={"top_p_size": {"p": 0.9}})
    problem = assert_problem(client.post("/v1/attributions", json=body), 422, "validation-error")
    locations = [error["loc"] for error in problem["errors"]]
    assert ["body", "step_scores_args", "top_p_size", "p"] in locations
    assert ["body", "step_scores_args", "top_p_size", "top_p"] in locations


@pytest.mark.usefixtures("worker")
def test_every_step_function_as_a_step_score_in_one_job(client: httpx.Client) -> None:
    body = fast_request(
        contrast_targets=["The cat sat on the mat."],
        step_scores=list(STEP_FUNCTION_SPECS),
        step_scores_args={"top_p_size": {"top_p": 0.9}},
    )
    job = wait_terminal(client, submit(client, body)["id"])
    assert job["status"] == "finished", job
    [seq] = client.get(f"/v1/jobs/{job['id']}/result").json()["sequences"]
    assert list(seq["step_scores"]) == list(STEP_FUNCTION_SPECS)
    n_steps = seq["attr_pos_end"] - seq["attr_pos_start"]
    assert all(len(values) == n_steps for values in seq["step_scores"].values())
