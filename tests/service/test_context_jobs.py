"""`POST /v1/attribute-context` (PECoRe) through the real stack: HTTP, Redis, a worker, tiny models.

The numbers are checked against the reference library in the engine's own tests; here: the job is a job like
any other (kind, progress, idempotency, listing), its result answers as JSON and as text only, its view shows
the selected tokens and their cues, escaped, and what does not apply to it is refused clearly.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from schemas.context import ContextAttributionRequest, ContextAttributionResult
from tests.service.helpers import UNSERVED_MODEL, assert_problem, submit, wait_terminal

CONTEXT = "George was sick yesterday."
CURRENT = "His colleagues asked him to come"
OUTPUT = "to the hospital."

RESULT = TypeAdapter(ContextAttributionResult)


def context_request(model: str = "tiny-gpt2", **fields: Any) -> dict[str, Any]:
    """A context job of a few tokens: forced output, every token above the mean CTI score, two at most."""
    return {
        "model": model,
        "input_context_text": CONTEXT,
        "input_current_text": CURRENT,
        "output_current_text": OUTPUT,
        "context_sensitivity_std_threshold": 0.0,
        "context_sensitivity_topk": 2,
        "attribution_std_threshold": 0.0,
        **fields,
    }


def submit_context(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    response = client.post("/v1/attribute-context", json=body, **kwargs)
    assert response.status_code == 202, response.text
    return response


def _finished(client: httpx.Client, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    response = submit_context(client, body)
    job = wait_terminal(client, response.json()["id"], timeout_s=120)
    assert job["status"] == "finished", job.get("error")
    result = client.get(f"/v1/jobs/{job['id']}/result")
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    return job, RESULT.validate_python(result.json())


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-t5"])
def test_a_context_job_runs_and_answers_json_text_and_a_view(client: httpx.Client, model: str) -> None:
    response = submit_context(client, context_request(model))
    submitted = response.json()
    assert response.headers["location"] == f"/v1/jobs/{submitted['id']}"
    assert submitted["kind"] == "attribute-context"
    assert submitted["request"] == ContextAttributionRequest.model_validate(
        context_request(model)
    ).model_dump(mode="json")
    job = wait_terminal(client, submitted["id"], timeout_s=120)
    assert job["status"] == "finished", job
    assert job["kind"] == "attribute-context"
    assert job["progress"]["total"] > 0
    assert job["progress"]["done"] == job["progress"]["total"]
    url = f"/v1/jobs/{job['id']}"

    result = RESULT.validate_python(client.get(url + "/result").json())
    assert result["id"] == job["id"]
    assert result["input_context"] == CONTEXT
    assert result["input_context_tokens"]
    assert len(result["cti_scores"]) == len(result["output_current_tokens"]) > 0
    assert 1 <= len(result["cti_selected"]) <= 2
    assert [item["cti_idx"] for item in result["cci_scores"]] == result["cti_selected"]
    for item in result["cci_scores"]:
        assert len(item["input_context_scores"] or []) == len(result["input_context_tokens"])
        assert item["input_context_cues"], item

    for text in (
        client.get(url + "/result", params={"format": "text"}),
        client.get(url + "/result", headers={"Accept": "text/plain"}),
    ):
        assert text.status_code == 200, text.text
        assert text.headers["content-type"].startswith("text/plain")
        assert text.text == result["text"]
        assert "Input context:" in text.text and "#1." in text.text

    view = client.get(url + "/view")
    assert view.status_code == 200
    assert view.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in view.headers["content-security-policy"]
    page = view.text
    assert "<script" not in page and "http" not in page.split("</head>")[1]
    generated = re.search(r'<p class="tokens output-current">(.*?)</p>', page)
    assert generated is not None
    assert generated.group(1).count('class="tok') == len(result["output_current_tokens"])
    selected = re.findall(r'class="tok [pnz]\d* sel" data-index="(\d+)"', generated.group(1))
    assert sorted(int(i) for i in selected) == sorted(result["cti_selected"])
    sections = re.findall(r'<section class="cci" data-cti-idx="(\d+)">(.*?)</section>', page)
    assert [int(idx) for idx, _ in sections] == result["cti_selected"]
    for (_, section), item in zip(sections, result["cci_scores"], strict=True):
        cues = re.findall(r'class="tok [pnz]\d* sel" data-index="(\d+)"', section)
        assert sorted(int(i) for i in cues) == sorted(item["input_context_cues"])


@pytest.mark.usefixtures("worker")
def test_what_applies_to_attribution_jobs_only_is_refused(client: httpx.Client) -> None:
    job, _ = _finished(client, context_request(context_sensitivity_topk=1))
    url = f"/v1/jobs/{job['id']}"
    for fmt in ("csv", "inseq"):
        body = assert_problem(client.get(url + "/result", params={"format": fmt}), 422, "invalid-request")
        assert body["available"] == ["json", "text"]
        assert "json or text" in body["detail"]
    aggregated = client.post(url + "/aggregate", json={"steps": [{"aggregator": "scores"}]})
    body = assert_problem(aggregated, 422, "invalid-request")
    assert "attribution jobs" in body["detail"]
    for image in ("heatmap.png", "heatmap.svg"):
        body = assert_problem(client.get(f"{url}/{image}"), 422, "invalid-request")
        assert body["detail"].endswith(url + "/view")


@pytest.mark.usefixtures("worker")
def test_the_view_escapes_every_text(client: httpx.Client) -> None:
    hostile = '<img src=x onerror="alert(1)"> & George'
    job, result = _finished(client, context_request(input_context_text=hostile, context_sensitivity_topk=1))
    page = client.get(f"/v1/jobs/{job['id']}/view").text
    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; George" in page
    assert result["input_context"] == hostile


@pytest.mark.usefixtures("worker")
def test_an_attribution_job_has_no_text_format(client: httpx.Client) -> None:
    job = wait_terminal(
        client,
        submit(client, {"model": "tiny-gpt2", "inputs": [CURRENT], "generation_args": {"max_new_tokens": 2}})[
            "id"
        ],
    )
    body = assert_problem(
        client.get(f"/v1/jobs/{job['id']}/result", params={"format": "text"}), 422, "invalid-request"
    )
    assert body["available"] == ["json", "csv", "inseq"]


@pytest.mark.parametrize(
    ("fields", "location", "message"),
    [
        ({"handle_output_context_strategy": "manual"}, ["body"], "a service cannot do"),
        ({"attribution_method": "lime-green"}, ["body", "attribution_method"], "unknown method 'lime-green'"),
        (
            {"context_sensitivity_metric": "probability"},
            ["body", "context_sensitivity_metric"],
            "contrastive",
        ),
        ({"input_template": "{context} and nothing else"}, ["body"], "{current}"),
        ({"attributed_fn": "no-such-fn"}, ["body", "attributed_fn"], "not an attributable"),
        ({"colour": "blue"}, ["body", "colour"], "unknown field"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(
    client: httpx.Client, fields: dict[str, Any], location: list[str], message: str
) -> None:
    response = client.post("/v1/attribute-context", json=context_request(UNSERVED_MODEL, **fields))
    errors = assert_problem(response, 422, "validation-error")["errors"]
    assert any(error["loc"] == location and message in error["msg"] for error in errors), errors


def test_an_unknown_model_is_404(client: httpx.Client) -> None:
    body = assert_problem(
        client.post("/v1/attribute-context", json=context_request("no-such-model")), 404, "unknown-model"
    )
    assert "tiny-gpt2" in body["available"]


def test_idempotency_and_listing_treat_it_as_a_job(client: httpx.Client) -> None:
    body = context_request(UNSERVED_MODEL)
    first = submit_context(client, body, headers={"Idempotency-Key": "ctx-1"})
    again = submit_context(client, body, headers={"Idempotency-Key": "ctx-1"})
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json()["status"] == "queued"
    other = client.post(
        "/v1/attribute-context", json={**body, "seed": 1}, headers={"Idempotency-Key": "ctx-1"}
    )
    assert_problem(other, 422, "idempotency-key-reused")
    listed = client.get("/v1/jobs").json()["jobs"]
    assert [(job["id"], job["kind"]) for job in listed] == [(first.json()["id"], "attribute-context")]
    result = client.get(f"/v1/jobs/{first.json()['id']}/result")
    assert_problem(result, 409, "job-not-ready")
