"""`GET /v1/jobs/{id}/events`: Server-Sent Events of a job's status and progress until it ends, on the real
stack (the test worker writes progress every 0.05 s at most)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis

from tests.service.helpers import (
    SENTENCES,
    assert_problem,
    fast_request,
    queued_request,
    submit,
    wait_terminal,
)


def read_events(response: httpx.Response) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(event, id, job) of each SSE event of a streamed response, as they arrive; comments are skipped."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                yield fields["event"], int(fields["id"]), orjson.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


def stepped_request() -> dict[str, Any]:
    """An attribution of many short steps (16 inputs x 5 tokens, 50 IG steps each): a second or two."""
    return {
        "model": "tiny-gpt2",
        "method": "integrated_gradients",
        "method_args": {"n_steps": 50},
        "inputs": [SENTENCES[i % len(SENTENCES)] for i in range(16)],
        "generation_args": {"max_new_tokens": 5},
    }


@pytest.mark.usefixtures("worker")
def test_a_stream_shows_every_progress_step_then_the_end(client: httpx.Client, redis_client: Redis) -> None:
    # What the worker writes, seen as it publishes it (subscribed before the job exists).
    writes = redis_client.pubsub()
    writes.psubscribe("seqattr:events:*")
    try:
        job = submit(client, stepped_request())
        seen: list[tuple[str, int, dict[str, Any]]] = []
        with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            seen = list(read_events(response))
        written = []
        while (message := writes.get_message(timeout=0.2)) is not None:
            if message["type"] == "pmessage" and message["channel"].decode().endswith(job["id"]):
                written.append(orjson.loads(message["data"])["done"])
    finally:
        writes.close()

    events, ids, records = zip(*seen, strict=True)
    assert events[0] == "status" and events[-1] == "status"
    assert list(ids) == list(range(1, len(ids) + 1))
    final = records[-1]
    assert final["status"] == "finished" and final == client.get(f"/v1/jobs/{job['id']}").json()
    total = final["progress"]["total"]
    done = [record["progress"]["done"] for record in records]
    assert done == sorted(done) and done[-1] == total > 0
    # Every value written after the stream's first event reached the client; the job ran long enough for
    # many of them to be streamed.
    assert set(written) >= {total} and {d for d in written if d >= done[0]} <= set(done)
    assert len(set(done)) >= 4, done
    assert all(r["status"] == "started" for r in records if 0 < r["progress"]["done"] < total)


@pytest.mark.usefixtures("worker")
def test_a_late_client_gets_the_final_record_and_the_stream_ends(client: httpx.Client) -> None:
    job = submit(client, fast_request())
    final = wait_terminal(client, job["id"])
    started = time.monotonic()
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        seen = list(read_events(response))
    assert time.monotonic() - started < 1.0
    assert seen == [("status", 1, final)]


def test_a_queued_job_canceled_ends_its_stream(client: httpx.Client) -> None:
    job = submit(client, queued_request())
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        events = read_events(response)
        event, _, first = next(events)
        assert (event, first["status"]) == ("status", "queued")
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 202
        started = time.monotonic()
        rest = list(events)  # no worker announces this end: the stream's own re-read sees it
    assert [(e, r["status"]) for e, _, r in rest] == [("status", "canceled")]
    assert time.monotonic() - started < 2.5


def test_an_unknown_job_has_no_stream(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/jobs/" + "0" * 32 + "/events"), 404, "unknown-job")
    assert_problem(client.get("/v1/jobs/not-an-id/events"), 404, "unknown-job")


@pytest.mark.usefixtures("worker")
def test_a_batch_stream_follows_its_items_to_the_end(client: httpx.Client) -> None:
    items = [{"input": f"{SENTENCES[i % len(SENTENCES)]} ({i})"} for i in range(6)]
    body = {"model": "tiny-gpt2", "generation_args": {"max_new_tokens": 3}, "items": items, "chunk_size": 2}
    created = client.post("/v1/batches", json=body)
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    with client.stream("GET", f"/v1/batches/{batch_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = list(read_events(response))
    events, ids, records = zip(*seen, strict=True)
    assert events[0] == events[-1] == "status" and list(ids) == list(range(1, len(ids) + 1))
    done = [record["done"] for record in records]
    assert done == sorted(done) and done[-1] == 6
    news = [(r["status"], r["done"], r["counts"]) for r in records]
    assert all(a != b for a, b in zip(news, news[1:], strict=False))  # an event for each change only
    final = client.get(f"/v1/batches/{batch_id}").json()
    assert records[-1]["status"] == final["status"] == "finished"
    assert records[-1]["counts"] == final["counts"] == {**final["counts"], "finished": 6}
    assert_problem(client.get("/v1/batches/" + "0" * 32 + "/events"), 404, "unknown-batch")
