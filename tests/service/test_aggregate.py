"""`POST /v1/jobs/{id}/aggregate` and `aggregation.steps` through the real stack (HTTP, Redis, a worker).

The numbers of each chain are checked against the reference library in
`tests/workers/test_aggregation_parity.py`; here: the endpoint answers from the kept scores without a worker,
says which field would keep what is missing, refuses bad chains clearly, pairs two jobs, and forgets the kept
scores with the job.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from redis import Redis

from schemas.redis_keys import scores_key
from tests.result_shape import assert_valid_result
from tests.service.helpers import assert_problem, queued_request, submit, wait_terminal
from tests.workers.parity import matrix

pytestmark = pytest.mark.usefixtures("worker")

PROMPT = "the cat and the dog and the cat"
TARGET = "the cat and the dog and the cat sat on the mat. the dog"


def _finished(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"model": "tiny-gpt2", "inputs": [PROMPT], "generated_texts": [TARGET], **fields}
    job = wait_terminal(client, submit(client, body)["id"])
    assert job["status"] == "finished", job
    return job


def _aggregate(client: httpx.Client, job_id: str, steps: list[dict[str, Any]]) -> httpx.Response:
    return client.post(f"/v1/jobs/{job_id}/aggregate", json={"steps": steps})


def test_a_chain_runs_on_the_kept_scores(client: httpx.Client, worker: Any) -> None:
    job = _finished(
        client,
        step_scores=["probability"],
        aggregation={"keep_granular": True, "granular_precision": "float32"},
    )
    result = client.get(f"/v1/jobs/{job['id']}/result").json()
    worker.stop()  # no worker from here on: the API alone answers
    try:
        again = _aggregate(client, job["id"], [{"aggregator": "scores"}])
        assert again.status_code == 200, again.text
        assert again.headers["content-type"] == "application/json"
        body = again.json()
        assert_valid_result(body)
        got, want = (
            matrix(body["sequences"][0]["target_attributions"]),
            matrix(result["sequences"][0]["target_attributions"]),
        )
        np.testing.assert_allclose(got, want, atol=1e-5, equal_nan=True)
        assert body["info"]["aggregation"]["reaggregated"]["from"] == "unreduced"

        merged = _aggregate(
            client,
            job["id"],
            [
                {"aggregator": "scores", "aggregate_fn": "sum"},
                {"aggregator": "subwords", "special_chars": ["▁"], "is_suffix_symbol": True},
            ],
        )
        assert merged.status_code == 200, merged.text
        seq = merged.json()["sequences"][0]
        assert len(seq["target"]) < len(result["sequences"][0]["target"])
        assert any(t["id"] == -1 for t in seq["target"])
        assert len(seq["step_scores"]["probability"]) == seq["attr_pos_end"] - seq["attr_pos_start"]
    finally:
        worker.ensure()


def test_missing_unreduced_scores_name_the_field_that_keeps_them(client: httpx.Client) -> None:
    job = _finished(client)
    problem = assert_problem(
        _aggregate(client, job["id"], [{"aggregator": "scores"}]), 409, "scores-not-kept"
    )
    assert problem["keep_with"] == "aggregation.keep_granular"
    assert "keep_granular" in problem["detail"]
    # Token-level chains start from the kept token-level scores.
    spans = _aggregate(client, job["id"], [{"aggregator": "spans", "target_spans": [[1, 3]]}])
    assert spans.status_code == 200, spans.text
    assert spans.json()["info"]["aggregation"]["reaggregated"]["from"] == "base"


def test_bad_chains_are_clear_problems(client: httpx.Client) -> None:
    job = _finished(client)
    past_end = assert_problem(
        _aggregate(client, job["id"], [{"aggregator": "spans", "target_spans": [[1, 300]]}]),
        422,
        "invalid-aggregation",
    )
    assert "step 0 (spans)" in past_end["detail"] and "past the end" in past_end["detail"]
    reduced = assert_problem(
        _aggregate(
            client,
            job["id"],
            [
                {"aggregator": "spans", "target_spans": [[0, 2]]},
                {"aggregator": "scores", "aggregate_fn": "sum"},
            ],
        ),
        422,
        "invalid-aggregation",
    )
    assert "no unit dimension left" in reduced["detail"]
    invalid = assert_problem(
        _aggregate(client, job["id"], [{"aggregator": "spans", "target_spans": [[3, 1]]}]),
        422,
        "validation-error",
    )
    assert invalid["errors"]
    assert_problem(
        _aggregate(client, job["id"], [{"aggregator": "split", "split_pattern": "a*"}]),
        422,
        "validation-error",
    )
    assert_problem(_aggregate(client, "0" * 32, [{"aggregator": "scores"}]), 404, "unknown-job")


def test_pair_subtracts_another_job(client: httpx.Client) -> None:
    first = _finished(client, step_scores=["probability"])
    second = _finished(client, method="input_x_gradient", step_scores=["probability"])
    paired = _aggregate(client, first["id"], [{"aggregator": "pair", "paired_job_id": second["id"]}])
    assert paired.status_code == 200, paired.text
    a = client.get(f"/v1/jobs/{first['id']}/result").json()["sequences"][0]
    b = client.get(f"/v1/jobs/{second['id']}/result").json()["sequences"][0]
    got = paired.json()["sequences"][0]
    np.testing.assert_allclose(
        matrix(got["target_attributions"]),
        matrix(b["target_attributions"]) - matrix(a["target_attributions"]),
        atol=1e-6,
        equal_nan=True,
    )
    other_shape = wait_terminal(
        client,
        submit(client, {"model": "tiny-gpt2", "inputs": [PROMPT], "generated_texts": [PROMPT + " sat"]})[
            "id"
        ],
    )
    mismatch = assert_problem(
        _aggregate(client, first["id"], [{"aggregator": "pair", "paired_job_id": other_shape["id"]}]),
        422,
        "invalid-aggregation",
    )
    assert other_shape["id"] in mismatch["detail"]
    assert_problem(
        _aggregate(client, first["id"], [{"aggregator": "pair", "paired_job_id": "f" * 32}]),
        404,
        "unknown-job",
    )


def test_unfinished_jobs_are_not_aggregated(client: httpx.Client) -> None:
    job = submit(client, queued_request())
    problem = assert_problem(_aggregate(client, job["id"], [{"aggregator": "scores"}]), 409, "job-not-ready")
    assert problem["job_status"] == "queued"


def test_request_steps_merge_tokens_and_deleting_forgets_the_scores(
    client: httpx.Client, redis_client: Redis
) -> None:
    job = _finished(
        client,
        aggregation={"steps": [{"aggregator": "subwords", "special_chars": ["▁"], "is_suffix_symbol": True}]},
    )
    result = client.get(f"/v1/jobs/{job['id']}/result").json()
    assert_valid_result(result)
    assert any(t["id"] == -1 for t in result["sequences"][0]["target"])
    # The token-level scores are kept from before the request's own steps.
    base = _aggregate(client, job["id"], [{"aggregator": "slices", "target_spans": [[0, 1]]}]).json()
    assert len(base["sequences"][0]["target"]) > len(result["sequences"][0]["target"])
    assert redis_client.exists(scores_key(job["id"]))
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not redis_client.exists(scores_key(job["id"]))
