"""Finished jobs shared by the export tests of one module: submitted once, then read in every format.

Import `export_jobs_fixture` (the fixture `export_jobs`) and `keep_module_jobs` into a test module: the
latter, named `clean_redis`, replaces the per-test flush of `tests/service/conftest.py` (which would delete
the jobs between tests); `export_jobs` flushes Redis before and after the module instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis

from tests.service.helpers import queued_request, submit
from tests.service.stack import WorkerProcess, flush_jobs

INPUTS = ["Hello world, this is a test.", "George was sick yesterday."]
"""Two inputs of CORPUS words; 'world,' is one token with a comma in it (quoted in CSV)."""

REQUESTS: dict[str, dict[str, Any]] = {
    "decoder": {
        "model": "tiny-gpt2",
        "inputs": INPUTS,
        "generation_args": {"max_new_tokens": 3},
        "step_scores": ["probability"],
    },
    "seq2seq": {
        "model": "tiny-t5",
        "inputs": INPUTS[:1],
        "generation_args": {"max_new_tokens": 4},
        "attribute_target": True,
        "step_scores": ["probability", "entropy"],
    },
    # Attributed positions that are not the default: Inseq's decoder-only source is then the target before
    # attr_pos_start (longer than the prompt), and its target rows stop at attr_pos_end.
    "window": {
        "model": "tiny-gpt2",
        "inputs": INPUTS[1:],
        "generation_args": {"max_new_tokens": 4},
        "attr_pos_start": 5,
        "attr_pos_end": 7,
        "step_scores": ["probability"],
    },
    # The decoder job without the hidden-size reduction: Inseq's default aggregation of it must give the
    # decoder job's scores.
    "granular": {
        "model": "tiny-gpt2",
        "inputs": INPUTS,
        "generation_args": {"max_new_tokens": 3},
        "aggregation": {"granular": True},
    },
}


@dataclass(frozen=True)
class FinishedJob:
    id: str
    request: dict[str, Any]
    raw: bytes
    """The JSON result, as `GET /v1/jobs/{id}/result` serves it by default."""

    @property
    def result(self) -> dict[str, Any]:
        return orjson.loads(self.raw)


@dataclass(frozen=True)
class ExportJobs:
    finished: dict[str, FinishedJob]
    queued_id: str
    """A job no test worker takes: still queued."""


@pytest.fixture(autouse=True, name="clean_redis")
def keep_module_jobs() -> Iterator[None]:
    """The module's jobs live for the whole module (see `export_jobs`)."""
    yield


@pytest.fixture(scope="module", name="export_jobs")
def export_jobs_fixture(
    api_url: str, worker_process: WorkerProcess, redis_client: Redis
) -> Iterator[ExportJobs]:
    flush_jobs(redis_client)
    worker_process.ensure()
    with httpx.Client(base_url=api_url, timeout=60) as client:
        ids = {name: submit(client, body)["id"] for name, body in REQUESTS.items()}
        finished = {}
        for name, job_id in ids.items():
            job = client.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
            assert job["status"] == "finished", job
            response = client.get(f"/v1/jobs/{job_id}/result")
            assert response.status_code == 200, response.text
            finished[name] = FinishedJob(job_id, job["request"], response.content)
        queued = submit(client, queued_request())["id"]
    yield ExportJobs(finished, queued)
    flush_jobs(redis_client)
