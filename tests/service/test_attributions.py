"""`POST /v1/attributions`: acceptance, validation problems, limits, idempotency."""

from __future__ import annotations

import httpx
import pytest

from schemas.defaults import MAX_BODY_BYTES
from schemas.methods import METHOD_SPECS
from tests.service.helpers import UNSERVED_MODEL, assert_problem, queued_request, submit


def test_submit_returns_202_with_location_and_job(client: httpx.Client) -> None:
    response = client.post("/v1/attributions", json=queued_request())
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert len(job["id"]) == 32
    assert job["kind"] == "attribution"
    assert job["status"] == "queued"
    assert job["position"] == 0
    assert job["progress"] == {"done": 0, "total": 0}
    assert job["error"] is None and job["started_at"] is None and job["ended_at"] is None
    assert job["links"]["result"] == f"/v1/jobs/{job['id']}/result"
    # The stored request is the validated one, defaults filled in.
    assert job["request"]["model"] == UNSERVED_MODEL
    assert job["request"]["method"] == "saliency"
    assert job["request"]["method_args"] == {"abs": True}


def test_second_job_queues_behind_the_first(client: httpx.Client) -> None:
    submit(client, queued_request())
    second = submit(client, queued_request())
    assert second["position"] == 1


def test_unknown_model_is_404_listing_available(client: httpx.Client) -> None:
    response = client.post("/v1/attributions", json=queued_request(model="no-such-model"))
    body = assert_problem(response, 404, "unknown-model")
    assert "no-such-model" in body["detail"]
    assert {"tiny-gpt2", "tiny-t5", "smollm2-135m-instruct"} <= set(body["available"])


def test_unknown_field_is_named(client: httpx.Client) -> None:
    response = client.post("/v1/attributions", json=queued_request(colour="blue"))
    body = assert_problem(response, 422, "validation-error")
    assert {"loc": ["body", "colour"], "msg": "unknown field 'colour'", "type": "extra_forbidden"} in body[
        "errors"
    ]


def test_unknown_method_lists_available_ones(client: httpx.Client) -> None:
    response = client.post("/v1/attributions", json=queued_request(method="lime-green"))
    body = assert_problem(response, 422, "validation-error")
    [error] = body["errors"]
    assert error["loc"] == ["body", "method"]
    assert "available: " + ", ".join(sorted(METHOD_SPECS)) in error["msg"]


def test_each_invalid_location_is_reported(client: httpx.Client) -> None:
    body = queued_request(generation_args={"max_new_tokens": 0, "top_p": 2})
    del body["inputs"]
    errors = assert_problem(client.post("/v1/attributions", json=body), 422, "validation-error")["errors"]
    locations = {tuple(error["loc"]) for error in errors}
    assert locations == {
        ("body", "inputs"),
        ("body", "generation_args", "max_new_tokens"),
        ("body", "generation_args", "top_p"),
    }
    assert all("input" not in error for error in errors)  # never echo the submitted values


def test_unparseable_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/attributions", content=b'{"inputs": ["a"', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in assert_problem(response, 400, "malformed-body")["detail"]


def test_body_not_sent_as_json_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/attributions", content=b"inputs=a", headers={"content-type": "text/plain"})
    assert_problem(response, 400, "malformed-body")


def test_missing_body_is_422(client: httpx.Client) -> None:
    body = assert_problem(client.post("/v1/attributions"), 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body"]


@pytest.mark.parametrize("chunked", [False, True])
def test_body_too_large_is_413(client: httpx.Client, chunked: bool) -> None:
    payload = b'{"inputs": ["' + b"a" * MAX_BODY_BYTES + b'"]}'
    content = iter([payload[i : i + 65536] for i in range(0, len(payload), 65536)]) if chunked else payload
    response = client.post("/v1/attributions", content=content, headers={"content-type": "application/json"})
    assert assert_problem(response, 413, "body-too-large")["max_bytes"] == MAX_BODY_BYTES


def test_unknown_route_and_wrong_method_are_problems(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")
    response = client.put("/v1/attributions", json={})
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["allow"]


def test_idempotency_key_returns_the_same_job(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/attributions", json=queued_request(), headers=headers)
    again = client.post("/v1/attributions", json=queued_request(), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = client.post("/v1/attributions", json=queued_request(), headers={"Idempotency-Key": "order-43"})
    assert other.json()["id"] != first.json()["id"]


def test_idempotency_key_of_a_deleted_job_makes_a_new_one(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "order-9"}
    first = submit(client, queued_request(), headers=headers)
    assert client.delete(f"/v1/jobs/{first['id']}").status_code == 202  # canceled
    assert client.delete(f"/v1/jobs/{first['id']}").status_code == 204  # deleted
    second = client.post("/v1/attributions", json=queued_request(), headers=headers)
    assert second.status_code == 202 and second.json()["id"] != first["id"]
    assert "idempotent-replayed" not in second.headers


def test_idempotency_key_with_another_body_is_422(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "order-7"}
    first = submit(client, queued_request(), headers=headers)
    response = client.post("/v1/attributions", json=queued_request(seed=3), headers=headers)
    assert assert_problem(response, 422, "idempotency-key-reused")["job_id"] == first["id"]
