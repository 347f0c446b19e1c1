"""`GET /v1/jobs/{id}/result` in every format on the real stack: CSV read back with pandas and compared with
the JSON result, rounding, negotiation (`?format=`, `Accept`, 406), gzip, the size limit (413) and the
problems of jobs without a result."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from cli.processes import stop
from tests.service.export_jobs import (  # noqa: F401 (fixtures)
    ExportJobs,
    FinishedJob,
    export_jobs_fixture,
    keep_module_jobs,
)
from tests.service.helpers import assert_problem
from tests.service.stack import stack_env, start_api

CSV = "text/csv; charset=utf-8"
INSEQ = "application/x-inseq+json"


def _result_url(job: FinishedJob | str) -> str:
    return f"/v1/jobs/{job if isinstance(job, str) else job.id}/result"


def _read_csv(response: httpx.Response) -> pd.DataFrame:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CSV
    return pd.read_csv(io.StringIO(response.text))


def _matrix(rows: list[list[float | None]], digits: int | None = None) -> np.ndarray:
    return np.array(
        [[np.nan if v is None else (v if digits is None else round(v, digits)) for v in row] for row in rows]
    )


def assert_csv_matches(frame: pd.DataFrame, result: dict[str, Any], digits: int | None = None) -> None:
    """Every score of every side and every step score, pivoted back out of the long table, equals the
    JSON result's (null ↔ NaN), with the tokens and generated tokens of each row."""
    assert list(frame.columns) == [
        "sequence",
        "side",
        "position",
        "token",
        "step",
        "generated_token",
        "score",
    ]
    expected_rows = 0
    for k, seq in enumerate(result["sequences"]):
        start = seq["attr_pos_start"]
        for side in ("source", "target"):
            matrix = seq[f"{side}_attributions"]
            rows = frame[(frame["sequence"] == k) & (frame["side"] == side)]
            if matrix is None:
                assert rows.empty
                continue
            expected_rows += len(matrix) * len(matrix[0])
            table = rows.pivot(index="position", columns="step", values="score")
            assert list(table.index) == list(range(len(matrix)))
            assert list(table.columns) == list(range(start, start + len(matrix[0])))
            np.testing.assert_allclose(table.to_numpy(), _matrix(matrix, digits), rtol=1e-12, atol=0)
            tokens = rows.groupby("position")["token"].first()
            assert list(tokens) == [t["token"] for t in seq[side]][: len(matrix)]
            generated = rows.groupby("step")["generated_token"].first()
            assert list(generated) == [seq["target"][step]["token"] for step in table.columns]
        for name, values in seq["step_scores"].items():
            rows = frame[
                (frame["sequence"] == k) & (frame["side"] == "step_score") & (frame["token"] == name)
            ]
            expected_rows += len(values)
            assert rows["position"].isna().all()
            assert list(rows["step"]) == list(range(start, start + len(values)))
            assert list(rows["generated_token"]) == [seq["target"][s]["token"] for s in rows["step"]]
            np.testing.assert_allclose(
                rows["score"].to_numpy(), _matrix([values], digits)[0], rtol=1e-12, atol=0
            )
    assert len(frame) == expected_rows


def test_csv_of_a_decoder_only_job_holds_every_score(client: httpx.Client, export_jobs: ExportJobs) -> None:
    job = export_jobs.finished["decoder"]
    response = client.get(_result_url(job), params={"format": "csv"})
    frame = _read_csv(response)
    assert_csv_matches(frame, job.result)
    assert set(frame["side"]) == {"target", "step_score"}
    assert frame["score"].isna().any()  # the null cells after each step
    assert any("," in token for token in frame["token"])  # a quoted token came back whole
    assert response.headers["content-disposition"] == f'attachment; filename="{job.id}.csv"'


def test_csv_of_attributed_positions_past_the_prompt(client: httpx.Client, export_jobs: ExportJobs) -> None:
    job = export_jobs.finished["window"]
    [seq] = job.result["sequences"]
    assert (seq["attr_pos_start"], seq["attr_pos_end"]) == (5, 7) and len(seq["target"]) == 8
    frame = _read_csv(client.get(_result_url(job), params={"format": "csv"}))
    assert_csv_matches(frame, job.result)
    assert sorted(set(frame["step"])) == [5, 6]


def test_csv_of_an_encoder_decoder_job_has_both_sides(client: httpx.Client, export_jobs: ExportJobs) -> None:
    job = export_jobs.finished["seq2seq"]
    frame = _read_csv(client.get(_result_url(job), params={"format": "csv"}))
    assert_csv_matches(frame, job.result)
    assert set(frame["side"]) == {"source", "target", "step_score"}
    assert set(frame.loc[frame["side"] == "step_score", "token"]) == {"probability", "entropy"}


def test_precision_rounds_csv_and_json(client: httpx.Client, export_jobs: ExportJobs) -> None:
    job = export_jobs.finished["seq2seq"]
    frame = _read_csv(client.get(_result_url(job), params={"format": "csv", "precision": 3}))
    assert_csv_matches(frame, job.result, digits=3)
    rounded = client.get(_result_url(job), params={"precision": 2})
    assert rounded.status_code == 200 and rounded.headers["content-type"] == "application/json"
    exact, body = job.result, rounded.json()
    assert len(rounded.content) < len(job.raw)
    assert body["info"] == exact["info"] and body["id"] == exact["id"]
    for got, want in zip(body["sequences"], exact["sequences"], strict=True):
        assert got["source"] == want["source"] and got["target"] == want["target"]
        for field in ("source_attributions", "target_attributions"):
            assert got[field] == [[None if v is None else round(v, 2) for v in row] for row in want[field]]
        assert got["step_scores"] == {k: [round(v, 2) for v in vs] for k, vs in want["step_scores"].items()}
    too_many = client.get(_result_url(job), params={"precision": 11})
    assert_problem(too_many, 422, "validation-error")


def test_granular_results_are_refused_as_csv(client: httpx.Client, export_jobs: ExportJobs) -> None:
    job = export_jobs.finished["granular"]
    body = assert_problem(client.get(_result_url(job), params={"format": "csv"}), 422, "granular-export")
    assert "format=json" in body["detail"] and f"/v1/jobs/{job.id}/aggregate" in body["detail"]
    assert client.get(_result_url(job), params={"format": "json"}).content == job.raw


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/csv", CSV),
        ("text/*", CSV),
        (INSEQ, INSEQ),
        ("application/*", "application/json"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("application/json;q=0.2, text/csv;q=0.9", CSV),
        ("text/csv;q=0, */*;q=0.1", "application/json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),
    ],
)
def test_accept_chooses_the_format(
    client: httpx.Client, export_jobs: ExportJobs, accept: str | None, media_type: str
) -> None:
    job = export_jobs.finished["decoder"]
    headers = {"Accept": accept} if accept is not None else {}
    request = client.build_request("GET", _result_url(job), headers=headers)
    if accept is None:
        del request.headers["Accept"]
    response = client.send(request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert "accept" in response.headers["vary"].lower()


def test_format_wins_over_accept_and_unmatched_accept_is_406(
    client: httpx.Client, export_jobs: ExportJobs
) -> None:
    job = export_jobs.finished["decoder"]
    response = client.get(_result_url(job), params={"format": "csv"}, headers={"Accept": "application/json"})
    assert response.headers["content-type"] == CSV
    response = client.get(_result_url(job), params={"format": "json"}, headers={"Accept": "image/png"})
    assert response.content == job.raw
    for accept in ("image/png", "text/csv;q=0, application/json;q=0", "application/problem+json"):
        body = assert_problem(client.get(_result_url(job), headers={"Accept": accept}), 406, "not-acceptable")
        assert body["available"] == ["application/json", "text/csv", INSEQ, "text/plain"]
    assert_problem(client.get(_result_url(job), params={"format": "xml"}), 422, "validation-error")


def _gzipped(client: httpx.Client, url: str, **params: Any) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", url, params=params, headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


@pytest.mark.parametrize("fmt", ["json", "csv", "inseq"])
def test_gzip_compresses_each_format(client: httpx.Client, export_jobs: ExportJobs, fmt: str) -> None:
    url = _result_url(export_jobs.finished["decoder"])
    plain = client.get(url, params={"format": fmt}, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    response, raw = _gzipped(client, url, format=fmt)
    assert response.status_code == 200
    assert (
        response.headers["content-encoding"] == "gzip"
        and "accept-encoding" in response.headers["vary"].lower()
    )
    assert raw[:2] == b"\x1f\x8b" and len(raw) < len(plain.content)
    assert gzip.decompress(raw) == plain.content


def test_gzip_leaves_the_other_routes_working(client: httpx.Client, export_jobs: ExportJobs) -> None:
    gzip_only = {"Accept-Encoding": "gzip"}
    # The long poll of a job that stays queued waits its whole time, then answers the job.
    waited = client.get(f"/v1/jobs/{export_jobs.queued_id}", params={"wait": 0.3}, headers=gzip_only)
    assert waited.status_code == 200 and waited.json()["status"] == "queued"
    metrics, raw = _gzipped(client, "/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-encoding"] == "gzip"
    assert b"seqattr_http_requests" in gzip.decompress(raw)
    assert_problem(client.get(_result_url("0" * 32), headers=gzip_only), 404, "unknown-job")
    listed = client.get("/v1/jobs", headers=gzip_only)
    assert listed.status_code == 200 and len(listed.json()["jobs"]) == len(export_jobs.finished) + 1


@pytest.mark.parametrize("fmt", [None, "json", "csv", "inseq"])
def test_jobs_without_a_result_keep_their_problems(
    client: httpx.Client, export_jobs: ExportJobs, fmt: str | None
) -> None:
    params = {"format": fmt} if fmt else {}
    body = assert_problem(client.get(_result_url(export_jobs.queued_id), params=params), 409, "job-not-ready")
    assert body["job_status"] == "queued"
    assert_problem(client.get(_result_url("f" * 32), params=params), 404, "unknown-job")
    assert_problem(client.get(_result_url("not-a-job"), params=params), 404, "unknown-job")
    if fmt is None:
        with_accept = client.get(_result_url(export_jobs.queued_id), headers={"Accept": "text/csv"})
        assert_problem(with_accept, 409, "job-not-ready")


@pytest.fixture(scope="module")
def limited_api(
    redis_url: str, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory, export_jobs: ExportJobs
) -> Iterator[tuple[str, int]]:
    """A second API process whose export limit is one byte short of the decoder job's stored JSON."""
    limit = len(export_jobs.finished["decoder"].raw) - 1
    env = stack_env(
        redis_url, tiny_registry, tmp_path_factory.mktemp("exports"), SEQATTR_MAX_EXPORT_BYTES=str(limit)
    )
    process, url = start_api(env)
    yield url, limit
    stop(process, "API")


def test_exports_over_the_limit_are_413_naming_smaller_formats(
    client: httpx.Client, export_jobs: ExportJobs, limited_api: tuple[str, int]
) -> None:
    url, limit = limited_api
    job = export_jobs.finished["decoder"]
    with httpx.Client(base_url=url, timeout=30) as limited:
        body = assert_problem(limited.get(_result_url(job)), 413, "export-too-large")
        assert (
            body["format"] == "json"
            and body["estimated_bytes"] == len(job.raw)
            and body["max_bytes"] == limit
        )
        alternatives = body["alternatives"]
        assert alternatives and [a["estimated_bytes"] for a in alternatives] == sorted(
            a["estimated_bytes"] for a in alternatives
        )
        assert any(a["format"] == "csv" for a in alternatives)
        for alternative in alternatives:
            assert alternative["query"] in body["detail"] and alternative["estimated_bytes"] <= limit
            served = limited.get(f"{_result_url(job)}?{alternative['query']}")
            assert served.status_code == 200, served.text
            assert abs(len(served.content) - alternative["estimated_bytes"]) <= 0.15 * len(served.content)
        # The inseq file's size is known exactly before it is written.
        inseq_size = len(client.get(_result_url(job), params={"format": "inseq"}).content)
        assert inseq_size > limit  # token objects make it the largest format of a tiny result
        body = assert_problem(
            limited.get(_result_url(job), params={"format": "inseq"}), 413, "export-too-large"
        )
        assert body["estimated_bytes"] == inseq_size and body["format"] == "inseq"
        # The job's stored JSON (1 byte over) still streams from the unlimited API as it was stored.
        assert client.get(_result_url(job)).content == job.raw
