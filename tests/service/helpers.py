"""Request helpers shared by the service tests."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

UNSERVED_MODEL = "tiny-marian"
"""A registered model no test worker listens for: its jobs stay queued."""

SERVED_MODELS = "tiny-gpt2,tiny-llama,tiny-t5,tiny-bart"
"""What the test worker serves."""

HEARTBEAT_S = 1.0
"""Worker heartbeat in tests: a killed worker's job is failed about 4 s after its last beat."""

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "George was sick yesterday.",
    "She reads a book every evening.",
    "The weather is nice today.",
]


def fast_request(model: str = "tiny-gpt2", **fields: Any) -> dict[str, Any]:
    """A job that takes well under a second on a tiny model."""
    return {"model": model, "inputs": [SENTENCES[0]], "generation_args": {"max_new_tokens": 3}, **fields}


def slow_request(model: str = "tiny-llama") -> dict[str, Any]:
    """A job of many short progress steps that runs for several seconds: 32 inputs, 100 IG steps each."""
    return {
        "model": model,
        "method": "integrated_gradients",
        "method_args": {"n_steps": 100},
        "inputs": [SENTENCES[i % len(SENTENCES)] for i in range(32)],
        "generation_args": {"max_new_tokens": 5},
    }


def queued_request(**fields: Any) -> dict[str, Any]:
    """A job no test worker takes: it stays queued."""
    return fast_request(**{"model": UNSERVED_MODEL, **fields})


def submit(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/v1/attributions", json=body, **kwargs)
    assert response.status_code == 202, response.text
    return response.json()


def poll(
    client: httpx.Client, job_id: str, until: Any, timeout_s: float = 60, interval_s: float = 0.02
) -> dict:
    """GET the job until `until(job)` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job.get('status')} after {timeout_s} s: {job}")
        time.sleep(interval_s)


def wait_terminal(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    return poll(
        client, job_id, lambda job: job["status"] in ("finished", "failed", "canceled"), timeout_s, 0.1
    )


PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"].endswith("/" + slug)
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    assert "Traceback" not in response.text
    return body
