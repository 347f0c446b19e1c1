"""`/v1/batches` on the real stack: a batch runs as chunk jobs on the worker, its results stream in input
order and equal the same request sent alone, uploads (JSONL, CSV) name their bad lines, a failing chunk fails
only its items, and batches are cancelable, listed and visible to their key only."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from cli.processes import stop
from tests.service.helpers import SENTENCES, UNSERVED_MODEL, assert_problem, submit, wait_terminal
from tests.service.stack import stack_env, start_api

TEMPLATE = {"model": "tiny-gpt2", "generation_args": {"max_new_tokens": 3}}
ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef00"


def _items(n: int) -> list[dict[str, Any]]:
    return [{"input": f"{SENTENCES[i % len(SENTENCES)]} ({i})"} for i in range(n)]


def _create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/batches", json={**TEMPLATE, **body})
    assert response.status_code == 202, response.text
    batch = response.json()
    assert response.headers["location"] == batch["links"]["self"] == f"/v1/batches/{batch['id']}"
    return batch


def _wait(client: httpx.Client, batch_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in ("finished", "canceled"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch['status']}: {batch}"
        time.sleep(0.1)


def _results(client: httpx.Client, batch_id: str, **params: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/batches/{batch_id}/results", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def _assert_same_sequence(batch_seq: dict[str, Any], alone_seq: dict[str, Any]) -> None:
    for field in ("source", "target", "attr_pos_start", "attr_pos_end"):
        assert batch_seq[field] == alone_seq[field], field
    for field in ("source_attributions", "target_attributions"):
        a, b = (np.array(s[field], dtype=float) for s in (batch_seq, alone_seq))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.mark.usefixtures("worker")
def test_an_inline_batch_runs_in_chunks_and_answers_in_input_order(client: httpx.Client) -> None:
    items = _items(20)
    batch = _create(client, items=items, chunk_size=8)
    assert (batch["total"], batch["chunks"]) == (20, 3)
    assert batch["template"]["method"] == "saliency"  # defaults filled
    done = _wait(client, batch["id"])
    assert done["status"] == "finished"
    assert done["counts"]["finished"] == done["done"] == 20
    assert done["throughput"] > 0 and done["eta_s"] == 0
    assert done["started_at"] and done["ended_at"]
    results = _results(client, batch["id"])
    assert [r["index"] for r in results] == list(range(20))
    assert all(r["status"] == "finished" and len(r["result"]["sequences"]) == 1 for r in results)
    for index in (0, 13):  # the first item of a chunk, and one inside another chunk
        job = submit(client, {**TEMPLATE, "inputs": [items[index]["input"]]})
        assert wait_terminal(client, job["id"])["status"] == "finished"
        alone = client.get(f"/v1/jobs/{job['id']}/result").json()
        _assert_same_sequence(results[index]["result"]["sequences"][0], alone["sequences"][0])
    table = client.get(f"/v1/batches/{batch['id']}/results", params={"format": "csv"})
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(table.text))
    assert sorted(frame["sequence"].unique()) == list(range(20))
    rows = frame[(frame["sequence"] == 13) & (frame["side"] == "target")]
    matrix = results[13]["result"]["sequences"][0]["target_attributions"]  # decoder-only: target side only
    assert len(rows) == sum(len(row) for row in matrix) > 0


@pytest.mark.usefixtures("worker")
def test_uploads_of_jsonl_and_csv_run_with_forced_targets(client: httpx.Client) -> None:
    lines = [{"text": s, "target": s + " Yes."} for s in SENTENCES[:3]]
    jsonl = "\n".join(json.dumps(line) for line in lines) + "\n"
    csv_text = "text,target\n" + "".join(f'"{line["text"]}","{line["target"]}"\n' for line in lines)
    for name, content in (("data.jsonl", jsonl), ("data.csv", csv_text)):
        response = client.post(
            "/v1/batches",
            files={"file": (name, content.encode())},
            data={"input_field": "text", "generated_field": "target", "request": json.dumps(TEMPLATE)},
        )
        assert response.status_code == 202, response.text
        batch = response.json()
        assert batch["total"] == 3
        assert _wait(client, batch["id"])["counts"]["finished"] == 3
        results = _results(client, batch["id"])
        assert [r["index"] for r in results] == [0, 1, 2]
        assert all(r["result"]["info"]["forced_targets"] for r in results)
    alone = submit(
        client, {**TEMPLATE, "inputs": [lines[2]["text"]], "generated_texts": [lines[2]["target"]]}
    )
    assert wait_terminal(client, alone["id"])["status"] == "finished"
    expected = client.get(f"/v1/jobs/{alone['id']}/result").json()["sequences"][0]
    _assert_same_sequence(results[2]["result"]["sequences"][0], expected)


def test_a_bad_line_of_an_upload_is_a_422_naming_it(client: httpx.Client) -> None:
    cases = [
        ("data.jsonl", '{"text": "fine"}\n\n{"text": "also fine"}\n{"text": oops}\n', 4),
        ("data.jsonl", '{"text": "fine"}\n{"other": "no text"}\n', 2),
        ("data.csv", 'text\nfine\n""\n', 3),
        ("data.csv", "text,target\na,b\nc,\n", 3),  # a forced target for some items only
    ]
    for name, content, line in cases:
        response = client.post(
            "/v1/batches",
            files={"file": (name, content.encode())},
            data={"input_field": "text", "generated_field": "target"}
            if "target" in content
            else {"input_field": "text"},
        )
        body = assert_problem(response, 422, "invalid-batch-file")
        assert body["line"] == line and f"line {line}" in body["detail"], body
    bad_template = client.post(
        "/v1/batches",
        files={"file": ("data.jsonl", b'{"text": "fine"}\n')},
        data={"input_field": "text", "request": json.dumps({"method": "nope"})},
    )
    errors = assert_problem(bad_template, 422, "validation-error")["errors"]
    assert errors[0]["loc"] == ["body", "request", "method"]
    too_large = client.post(
        "/v1/batches",
        files={"file": ("data.jsonl", b'{"text": "fine"}\n')},
        data={"input_field": "text", "chunk_size": "33"},
    )
    assert assert_problem(too_large, 422, "validation-error")["errors"][0]["loc"] == ["body", "chunk_size"]


def test_invalid_inline_batches_are_422_problems(client: httpx.Client) -> None:
    for body, loc in (
        ({**TEMPLATE, "method": "nope", "items": _items(2)}, ["body", "method"]),
        ({**TEMPLATE, "items": []}, ["body", "items"]),
        ({**TEMPLATE, "items": [{"input": "a", "generated": "b"}, {"input": "c"}]}, ["body"]),
        ({**TEMPLATE, "inputs": ["x"], "items": _items(1)}, ["body", "inputs"]),
    ):
        errors = assert_problem(client.post("/v1/batches", json=body), 422, "validation-error")["errors"]
        assert errors[0]["loc"] == loc, errors
    assert_problem(client.post("/v1/batches", content=b"{not json"), 400, "malformed-body")


@pytest.mark.usefixtures("worker")
def test_a_failing_chunk_fails_its_items_only(client: httpx.Client) -> None:
    items = _items(6)
    items[3] = {"input": "word " * 3000}  # more tokens than the model takes: its chunk (items 2, 3) fails
    batch = _create(client, items=items, chunk_size=2)
    done = _wait(client, batch["id"])
    assert done["status"] == "finished"
    assert (done["counts"]["finished"], done["counts"]["failed"]) == (4, 2)
    results = _results(client, batch["id"])
    assert [r["status"] for r in results] == [
        "finished",
        "finished",
        "failed",
        "failed",
        "finished",
        "finished",
    ]
    problem = results[2]["error"]
    assert problem == results[3]["error"] and problem["status"] >= 400 and problem["detail"]
    assert "result" not in results[2]


def test_cancel_stops_what_has_not_run_then_delete_removes_the_batch(client: httpx.Client) -> None:
    batch = _create(client, model=UNSERVED_MODEL, items=_items(5), chunk_size=2)
    assert batch["status"] == "queued" and batch["counts"]["queued"] == 5
    assert _results(client, batch["id"]) == []  # nothing finished: an empty prefix
    canceled = client.delete(f"/v1/batches/{batch['id']}")
    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["status"] == "canceled" and canceled.json()["counts"]["canceled"] == 5
    results = _results(client, batch["id"])
    assert [(r["index"], r["status"]) for r in results] == [(i, "canceled") for i in range(5)]
    assert results[0]["error"]["detail"]
    assert client.delete(f"/v1/batches/{batch['id']}").status_code == 204
    assert_problem(client.get(f"/v1/batches/{batch['id']}"), 404, "unknown-batch")


def test_batches_are_listed_newest_first_in_pages(client: httpx.Client) -> None:
    ids = [_create(client, model=UNSERVED_MODEL, items=_items(1))["id"] for _ in range(3)]
    page = client.get("/v1/batches", params={"limit": 2}).json()
    assert [b["id"] for b in page["batches"]] == ids[::-1][:2]
    rest = client.get("/v1/batches", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [b["id"] for b in rest["batches"]] == [ids[0]] and rest["next_cursor"] is None
    assert_problem(client.get("/v1/batches", params={"cursor": "garbage!"}), 422, "validation-error")


@pytest.fixture(scope="module")
def keyed_api(redis_url: str, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("batch-keys")
    env = stack_env(redis_url, tiny_registry, folder, SEQATTR_API_KEYS=f"alice:{ALICE},bob:{BOB}")
    process, url = start_api(env)
    yield url
    stop(process, "API")


def test_a_batch_is_visible_to_its_key_only(keyed_api: str) -> None:
    with (
        httpx.Client(base_url=keyed_api, headers={"X-API-Key": ALICE}, timeout=30) as alice,
        httpx.Client(base_url=keyed_api, headers={"X-API-Key": BOB}, timeout=30) as bob,
    ):
        batch = _create(alice, model=UNSERVED_MODEL, items=_items(2))
        path = f"/v1/batches/{batch['id']}"
        assert alice.get(path).status_code == 200
        for response in (bob.get(path), bob.get(path + "/results"), bob.delete(path)):
            assert_problem(response, 404, "unknown-batch")
        assert [b["id"] for b in alice.get("/v1/batches").json()["batches"]] == [batch["id"]]
        assert bob.get("/v1/batches").json()["batches"] == []
        assert alice.delete(path).status_code == 202
