"""`GET /metrics`: Prometheus text for the whole service, from one scrape of the API: its requests, the
queues, live workers, and what the workers added up in Redis (jobs ended, times, model loads)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import UNSERVED_MODEL, fast_request, queued_request, submit, wait_terminal


def _samples(client: httpx.Client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    # Counted by workers when they load a model: this session's worker may have loaded them before Redis was
    # flushed for this test, so only the family is certain here (tests/workers checks the counting).
    assert "# TYPE seqattr_model_loads_total counter" in response.text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    matching = [
        s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert matching, f"no sample {name}{labels}; have {sorted(samples)}"
    return sum(matching)


@pytest.mark.usefixtures("worker")
def test_metrics_cover_requests_queues_workers_and_jobs(client: httpx.Client) -> None:
    job = submit(client, fast_request())
    assert wait_terminal(client, job["id"])["status"] == "finished"
    failed = submit(client, fast_request(generated_texts=["Something else entirely"]))
    assert wait_terminal(client, failed["id"])["status"] == "failed"
    submit(client, queued_request())
    samples = _samples(client)
    assert _value(samples, "seqattr_redis_up") == 1
    assert _value(samples, "seqattr_workers_alive") >= 1
    assert _value(samples, "seqattr_queue_jobs", model=UNSERVED_MODEL) == 1
    assert _value(samples, "seqattr_queue_oldest_job_age_seconds", model=UNSERVED_MODEL) >= 0
    assert _value(samples, "seqattr_jobs_ended_total", status="finished", method="saliency") >= 1
    assert _value(samples, "seqattr_jobs_ended_total", status="failed", method="saliency") >= 1
    assert _value(samples, "seqattr_job_duration_seconds_count", method="saliency") >= 2
    assert _value(samples, "seqattr_engine_seconds_count", method="saliency") >= 1
    posts = _value(
        samples,
        "seqattr_http_requests_total",
        route="/v1/attributions",
        method="POST",
        status="202",
        key="anonymous",
    )
    assert posts >= 3
    assert _value(samples, "seqattr_http_requests_total", route="/v1/jobs/{job_id}", method="GET") >= 2
    assert _value(samples, "seqattr_http_request_duration_seconds_count", route="/v1/attributions") >= 3
