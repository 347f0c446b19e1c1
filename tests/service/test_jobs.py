"""`/v1/jobs`: the life of a job on a real worker, results, failures, cancellation, listing."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from redis import Redis

from tests.result_shape import assert_valid_result
from tests.service.helpers import (
    assert_problem,
    fast_request,
    poll,
    queued_request,
    slow_request,
    submit,
    wait_terminal,
)


@pytest.mark.usefixtures("worker")
def test_job_runs_to_finished_with_result(client: httpx.Client) -> None:
    job = submit(client, fast_request(step_scores=["probability"]))
    done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 20}).json()
    assert done["status"] == "finished", done
    assert done["progress"]["total"] == 3 and done["progress"]["done"] == 3
    assert done["started_at"] and done["ended_at"] and done["error"] is None and done["position"] is None
    response = client.get(f"/v1/jobs/{job['id']}/result")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    result = response.json()
    assert_valid_result(result)
    assert result["id"] == job["id"]
    assert result["model"]["id"] == "tiny-gpt2" and result["method"] == "saliency"
    [sequence] = result["sequences"]
    assert sequence["attr_pos_end"] - sequence["attr_pos_start"] == 3
    assert len(sequence["step_scores"]["probability"]) == 3


@pytest.mark.usefixtures("worker")
def test_result_is_served_as_stored(client: httpx.Client, redis_client: Redis) -> None:
    job = submit(client, fast_request(model="tiny-t5"))
    assert wait_terminal(client, job["id"])["status"] == "finished"
    stored = redis_client.get(f"seqattr:result:{job['id']}")
    assert client.get(f"/v1/jobs/{job['id']}/result").content == stored
    assert orjson.loads(stored)["model"]["is_encoder_decoder"] is True


@pytest.mark.usefixtures("worker")
def test_status_moves_queued_started_finished(client: httpx.Client) -> None:
    job = submit(client, slow_request() | {"inputs": slow_request()["inputs"][:6]})
    seen: list[str] = []
    progress: list[tuple[int, int]] = []

    def record(state: dict) -> bool:
        if not seen or seen[-1] != state["status"]:
            seen.append(state["status"])
        progress.append((state["progress"]["done"], state["progress"]["total"]))
        return state["status"] in ("finished", "failed", "canceled")

    final = poll(client, job["id"], record, timeout_s=120)
    assert seen == ["queued", "started", "finished"] or seen == ["started", "finished"], seen
    assert final["progress"] == {"done": 30, "total": 30}
    dones = [done for done, total in progress if total]
    assert dones == sorted(dones)  # progress only grows
    assert any(0 < done < 30 for done in dones), progress  # and is reported along the way


@pytest.mark.usefixtures("worker")
def test_engine_error_fails_the_job_with_its_problem(client: httpx.Client) -> None:
    # A decoder-only forced target must start with its prompt: the engine refuses it (a user error, 422).
    job = submit(client, fast_request(generated_texts=["Something else entirely"]))
    failed = wait_terminal(client, job["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["status"] == 422 and failed["error"]["type"].endswith("/invalid-request")
    assert failed["error"]["instance"] == f"/v1/jobs/{job['id']}"
    response = client.get(f"/v1/jobs/{job['id']}/result")
    body = assert_problem(response, 409, "job-failed")
    assert body["job_status"] == "failed" and body["error"] == failed["error"]


def test_result_of_a_queued_job_is_409_with_its_status(client: httpx.Client) -> None:
    job = submit(client, queued_request())
    body = assert_problem(client.get(f"/v1/jobs/{job['id']}/result"), 409, "job-not-ready")
    assert body["job_status"] == "queued"


def test_unknown_job_is_404(client: httpx.Client) -> None:
    for job_id in ("0" * 32, "not-a-job-id", "x:y"):
        assert_problem(client.get(f"/v1/jobs/{job_id}"), 404, "unknown-job")
    assert_problem(client.get(f"/v1/jobs/{'0' * 32}/result"), 404, "unknown-job")
    assert_problem(client.delete(f"/v1/jobs/{'0' * 32}"), 404, "unknown-job")


def test_expired_job_is_410(client: httpx.Client, redis_client: Redis) -> None:
    job = submit(client, queued_request())
    redis_client.pexpire(f"rq:job:{job['id']}", 1)  # what its retention TTL does, sooner
    time.sleep(0.05)
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 410, "job-expired")
    assert_problem(client.get(f"/v1/jobs/{job['id']}/result"), 410, "job-expired")


@pytest.mark.usefixtures("worker")
def test_long_poll_returns_early_or_after_wait(client: httpx.Client) -> None:
    waiting = submit(client, queued_request())
    start = time.monotonic()
    assert client.get(f"/v1/jobs/{waiting['id']}", params={"wait": 0.6}).json()["status"] == "queued"
    assert 0.5 <= time.monotonic() - start < 5
    job = submit(client, fast_request())
    start = time.monotonic()
    assert client.get(f"/v1/jobs/{job['id']}", params={"wait": 20}).json()["status"] == "finished"
    assert time.monotonic() - start < 15
    assert_problem(client.get(f"/v1/jobs/{job['id']}", params={"wait": -1}), 422, "validation-error")


def test_cancel_queued_job(client: httpx.Client) -> None:
    job = submit(client, queued_request())
    response = client.delete(f"/v1/jobs/{job['id']}")
    assert response.status_code == 202
    assert response.json()["status"] == "canceled"
    canceled = client.get(f"/v1/jobs/{job['id']}").json()
    assert (
        canceled["status"] == "canceled" and canceled["ended_at"] is not None and canceled["position"] is None
    )
    body = assert_problem(client.get(f"/v1/jobs/{job['id']}/result"), 409, "job-failed")
    assert body["job_status"] == "canceled"
    # Deleting it again removes the ended job.
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204


@pytest.mark.usefixtures("worker")
def test_cancel_running_job_stops_the_worker_on_it(client: httpx.Client) -> None:
    job = submit(client, slow_request())
    poll(client, job["id"], lambda state: state["status"] == "started" and state["progress"]["total"] > 0)
    response = client.delete(f"/v1/jobs/{job['id']}")
    assert response.status_code == 202 and response.json()["status"] == "canceled"
    # Deleting it again while its worker is still on it cancels again and keeps the record (else the job
    # would come back, finished, when its worker ends); once the worker has stopped, it deletes it.
    again = client.delete(f"/v1/jobs/{job['id']}")
    assert again.status_code in (202, 204)
    if again.status_code == 204:
        return
    assert again.json()["status"] == "canceled"
    # The worker stops at its next progress step; the job's end time appears then.
    stopped = poll(
        client, job["id"], lambda state: state["ended_at"] is not None, timeout_s=60, interval_s=0.1
    )
    assert stopped["status"] == "canceled" and stopped["error"] is None
    assert stopped["progress"]["done"] < stopped["progress"]["total"]
    # The worker is free again.
    after = submit(client, fast_request())
    assert wait_terminal(client, after["id"])["status"] == "finished"


@pytest.mark.usefixtures("worker")
def test_delete_finished_job_removes_it(client: httpx.Client, redis_client: Redis) -> None:
    job = submit(client, fast_request())
    assert wait_terminal(client, job["id"])["status"] == "finished"
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 404, "unknown-job")
    assert not redis_client.exists(f"seqattr:result:{job['id']}", f"rq:job:{job['id']}")


def test_list_jobs_newest_first_in_pages(client: httpx.Client) -> None:
    ids = [submit(client, queued_request(seed=i))["id"] for i in range(5)]
    pages, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params).json()
        pages.append([job["id"] for job in page["jobs"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [ids[::-1][0:2], ids[::-1][2:4], ids[::-1][4:5]]


def test_list_jobs_filters_by_status(client: httpx.Client) -> None:
    ids = [submit(client, queued_request(seed=i))["id"] for i in range(3)]
    client.delete(f"/v1/jobs/{ids[1]}")
    canceled = client.get("/v1/jobs", params={"status": "canceled"}).json()
    assert [job["id"] for job in canceled["jobs"]] == [ids[1]]
    queued = client.get("/v1/jobs", params={"status": "queued", "limit": 1}).json()
    assert [job["id"] for job in queued["jobs"]] == [ids[2]]
    rest = client.get("/v1/jobs", params={"status": "queued", "cursor": queued["next_cursor"]}).json()
    assert [job["id"] for job in rest["jobs"]] == [ids[0]] and rest["next_cursor"] is None
    assert client.get("/v1/jobs", params={"status": "finished"}).json() == {"jobs": [], "next_cursor": None}


def test_list_jobs_rejects_bad_parameters(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/jobs", params={"cursor": "%%%"}), 422, "validation-error")
    assert_problem(client.get("/v1/jobs", params={"limit": 0}), 422, "validation-error")
    assert_problem(client.get("/v1/jobs", params={"status": "sleeping"}), 422, "validation-error")
