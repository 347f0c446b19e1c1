"""`?format=inseq` read by the reference library itself: `inseq.FeatureAttributionOutput.load` of Inseq 0.7.1
gives back the JSON result's matrices (NaN where it has null), tokens, step scores and positions; what a user
does next (`aggregate()`, `show()`) works on it as on Inseq's own outputs."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.export_jobs import (  # noqa: F401 (fixtures)
    ExportJobs,
    FinishedJob,
    export_jobs_fixture,
    keep_module_jobs,
)

inseq = pytest.importorskip("inseq")
logging.getLogger("inseq").setLevel(logging.ERROR)

TOLERANCE = 1e-6


def _load(client: httpx.Client, job: FinishedJob, tmp_path: Path, **params: Any) -> Any:
    response = client.get(f"/v1/jobs/{job.id}/result", params={"format": "inseq", **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-inseq+json"
    path = tmp_path / f"{job.id}.json"
    path.write_bytes(response.content)
    return inseq.FeatureAttributionOutput.load(str(path))


def _array(rows: list[list[Any]] | None) -> np.ndarray | None:
    if rows is None:
        return None
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


def _assert_same(loaded: Any, expected: np.ndarray | None) -> None:
    if expected is None:
        assert loaded is None
        return
    got = loaded.numpy().astype(np.float64)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))  # NaN exactly where null was
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE, equal_nan=True)


def assert_matches_result(out: Any, job: FinishedJob) -> None:
    result = job.result
    decoder_only = not result["model"]["is_encoder_decoder"]
    assert len(out.sequence_attributions) == len(result["sequences"])
    for loaded, seq in zip(out.sequence_attributions, result["sequences"], strict=True):
        assert type(loaded).__name__ == "CoarseFeatureAttributionSequenceOutput"
        assert (loaded.attr_pos_start, loaded.attr_pos_end) == (seq["attr_pos_start"], seq["attr_pos_end"])
        source = seq["target"][: seq["attr_pos_start"]] if decoder_only else seq["source"]
        assert [(t.id, t.token) for t in loaded.source] == [(t["id"], t["token"]) for t in source]
        assert [(t.id, t.token) for t in loaded.target] == [(t["id"], t["token"]) for t in seq["target"]]
        _assert_same(loaded.source_attributions, _array(seq["source_attributions"]))
        rows = min(len(seq["target"]), seq["attr_pos_end"])  # Inseq's target rows stop at attr_pos_end
        target = seq["target_attributions"]
        _assert_same(loaded.target_attributions, None if target is None else _array(target[:rows]))
        assert set(loaded.step_scores) == set(seq["step_scores"])
        for name, values in seq["step_scores"].items():
            _assert_same(loaded.step_scores[name], _array([values])[0])
    info = out.info
    assert (
        info["model_name"] == result["model"]["id"] and info["model_class"] == result["model"]["architecture"]
    )
    assert info["attribution_method"] == result["method"] and info["attributed_fn"] == "probability_fn"
    assert info["input_texts"] == job.request["inputs"]
    assert info["step_scores"] == job.request["step_scores"]
    assert info["attribute_target"] == job.request["attribute_target"]
    assert len(info["generated_texts"]) == len(result["sequences"])


@pytest.mark.parametrize("name", ["decoder", "seq2seq", "window"])
def test_inseq_loads_the_export(
    client: httpx.Client, export_jobs: ExportJobs, tmp_path: Path, name: str
) -> None:
    job = export_jobs.finished[name]
    out = _load(client, job, tmp_path)
    assert_matches_result(out, job)
    # What a user does next: the default aggregation leaves reduced scores as they are, and they show.
    aggregated = out.aggregate()
    for before, after in zip(out.sequence_attributions, aggregated.sequence_attributions, strict=True):
        for field in ("source_attributions", "target_attributions"):
            if getattr(before, field) is None:
                assert getattr(after, field) is None
            else:
                _assert_same(getattr(after, field), getattr(before, field).numpy().astype(np.float64))
    view = out.show(display=False, return_html=True)
    first = job.result["sequences"][0]
    explained = first["target"][first["attr_pos_start"]]["token"]  # the first column's header
    assert isinstance(view, str) and html.escape(explained) in view


def test_granular_export_aggregates_like_the_reference(
    client: httpx.Client, export_jobs: ExportJobs, tmp_path: Path
) -> None:
    """Unreduced scores load as Inseq's granular output, and Inseq's own default aggregation of them (L2 over
    the hidden size, then each step normalised) gives the scores of the same job run with Seqattr's."""
    granular = export_jobs.finished["granular"]
    out = _load(client, granular, tmp_path)
    reduced = export_jobs.finished["decoder"].result
    for loaded, raw, seq in zip(
        out.sequence_attributions, granular.result["sequences"], reduced["sequences"], strict=True
    ):
        assert type(loaded).__name__ == "GranularFeatureAttributionSequenceOutput"
        hidden = len(next(c for row in raw["target_attributions"] for c in row if c is not None))
        assert tuple(loaded.target_attributions.shape) == (
            len(seq["target"]),
            len(seq["step_scores"]["probability"]),
            hidden,
        )
    for loaded, seq in zip(out.aggregate().sequence_attributions, reduced["sequences"], strict=True):
        expected = _array(seq["target_attributions"])
        got = loaded.target_attributions.numpy().astype(np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_precision_rounds_the_inseq_scores(
    client: httpx.Client, export_jobs: ExportJobs, tmp_path: Path
) -> None:
    job = export_jobs.finished["seq2seq"]
    out = _load(client, job, tmp_path, precision=2)
    [loaded] = out.sequence_attributions
    expected = np.round(_array(job.result["sequences"][0]["source_attributions"]), 2)
    np.testing.assert_allclose(loaded.source_attributions.numpy(), expected, rtol=0, atol=1e-6)
