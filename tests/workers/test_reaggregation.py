"""What the engine keeps for re-aggregation, and the aggregation options it applies itself.

- The kept unreduced scores, reduced again by the API's chain code, give back the job's own result.
- `aggregation.steps` and `aggregation.rescale` in a request give the reference library's numbers for the same
  `aggregate(...)` chain.
- The size budget drops the unreduced scores with a warning, never the job.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from schemas.aggregation import ScoresStep
from schemas.attribution import AttributionRequest
from schemas.methods import METHOD_SPECS
from schemas.scores.archive import unpack
from schemas.scores.sequence import to_result_sequence
from schemas.scores.steps import ChainContext, run_chain
from tests.workers.parity import assert_scores_equal, matrix

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PROMPT = "the cat and the dog and the cat"
TARGET = "the cat and the dog and the cat sat on the mat. the dog"
SOURCE = "the cat sat on the mat. the dog sat too."
SEQ2SEQ_TARGET = "the dog and the cat. the end"


@pytest.fixture(scope="module")
def attribute_job(engine_model: Callable[[str], Any]) -> Callable[..., Any]:
    from workers.engine.run import attribute

    def run(max_granular_bytes: int = 1 << 30, **fields: Any) -> Any:
        request = AttributionRequest(**fields)
        return attribute(
            request,
            engine_model(request.model),
            lambda *_: None,
            result_id="test",
            max_granular_bytes=max_granular_bytes,
        )

    return run


def _reduced_again(archive: Any, method: str) -> list[dict[str, Any]]:
    steps = [ScoresStep(aggregator="scores")] * len(METHOD_SPECS[method].default_aggregators)
    context = ChainContext(METHOD_SPECS[method].default_aggregators)
    return [to_result_sequence(s) for s in run_chain(archive.unreduced, list(steps), context)]


def _assert_results_close(got: list[dict[str, Any]], want: list[dict[str, Any]], atol: float) -> None:
    for got_seq, want_seq in zip(got, want, strict=True):
        for side in ("source_attributions", "target_attributions"):
            a, b = matrix(got_seq[side]), matrix(want_seq[side])
            if b is None:
                assert a is None
                continue
            assert a is not None and a.shape == b.shape
            assert (np.isnan(a) == np.isnan(b)).all()
            assert np.nanmax(np.abs(a - b)) <= atol, (side, np.nanmax(np.abs(a - b)))


@pytest.mark.parametrize(
    ("model", "method", "inputs", "target"),
    [
        ("tiny-gpt2", "saliency", PROMPT, TARGET),
        ("tiny-bart", "attention", SOURCE, SEQ2SEQ_TARGET),
        ("tiny-llama", "value_zeroing", PROMPT, TARGET),
    ],
)
def test_kept_scores_reduce_back_to_the_result(
    attribute_job: Callable[..., Any], model: str, method: str, inputs: str, target: str
) -> None:
    def run(**aggregation: Any) -> Any:
        return attribute_job(
            model=model,
            method=method,
            inputs=[inputs],
            generated_texts=[target],
            attribute_target=True,
            aggregation={"keep_granular": True, **aggregation},
        )

    out = run(granular_precision="float32")
    archive = unpack(out.archive)
    assert archive.raw_status == "kept"
    assert archive.unreduced is not None
    assert archive.unreduced[0].unit_ndim == len(METHOD_SPECS[method].unit_dims)
    _assert_results_close(_reduced_again(archive, method), out.result["sequences"], atol=1e-5)

    compact = run()
    with np.load(io.BytesIO(compact.archive)) as stored:
        assert {stored[name].dtype for name in stored.files if ".raw." in name} == {np.dtype(np.float16)}
    # float16, scaled to the largest magnitude: about three significant digits on normalised scores.
    _assert_results_close(_reduced_again(unpack(compact.archive), method), out.result["sequences"], atol=2e-3)


def test_methods_without_unit_dimensions_keep_their_scores_as_they_are(
    attribute_job: Callable[..., Any],
) -> None:
    out = attribute_job(model="tiny-gpt2", method="occlusion", inputs=[PROMPT], generated_texts=[TARGET])
    archive = unpack(out.archive)
    assert archive.raw_status == "base"
    assert archive.unreduced is archive.base


def test_unreduced_scores_past_the_budget_are_dropped_with_a_warning(
    attribute_job: Callable[..., Any],
) -> None:
    out = attribute_job(
        max_granular_bytes=100,
        model="tiny-gpt2",
        inputs=[PROMPT],
        generated_texts=[TARGET],
        aggregation={"keep_granular": True},
    )
    archive = unpack(out.archive)
    assert archive.raw_status == "over_budget" and archive.unreduced is None
    assert any("SEQATTR_MAX_GRANULAR_BYTES" in w for w in out.result["info"]["warnings"])
    assert out.result["sequences"][0]["target_attributions"]  # the job itself is whole


def test_not_kept_without_keep_granular(attribute_job: Callable[..., Any]) -> None:
    out = attribute_job(model="tiny-gpt2", inputs=[PROMPT], generated_texts=[TARGET])
    assert unpack(out.archive).raw_status == "not_requested"


@pytest.mark.parametrize(
    ("model", "inputs", "target", "symbol"),
    [("tiny-gpt2", PROMPT, TARGET, "▁"), ("tiny-t5", SOURCE, SEQ2SEQ_TARGET, "▁")],
)
def test_request_steps_and_rescale_equal_the_reference(
    attribute_job: Callable[..., Any],
    inseq_model: Callable[..., Any],
    model: str,
    inputs: str,
    target: str,
    symbol: str,
) -> None:
    causal = model == "tiny-gpt2"
    reference = inseq_model(model, "saliency").attribute(
        inputs, target, attribute_target=not causal, show_progress=False, step_scores=["probability"]
    )[0]
    cases = [
        (
            # Word-level tiny tokenizers: with the symbol read as a suffix mark, all but the last token merge.
            {"steps": [{"aggregator": "subwords", "special_chars": [symbol], "is_suffix_symbol": True}]},
            reference.aggregate().aggregate("subwords", special_chars=(symbol,), is_suffix_symbol=True),
        ),
        (
            {
                "rescale": True,
                "steps": [{"aggregator": "split", "split_pattern": r"\.", "split_mode": "end"}],
            },
            reference.aggregate("vnorm", rescale=True, normalize=False).aggregate(
                "split", split_pattern=r"\.", split_mode="end"
            ),
        ),
    ]
    for aggregation, want in cases:
        out = attribute_job(
            model=model,
            inputs=[inputs],
            generated_texts=[target],
            attribute_target=not causal,
            step_scores=["probability"],
            aggregation=aggregation,
        )
        got = out.result["sequences"][0]
        assert [t["token"] for t in got["target"]] == [t.token for t in want.target]
        assert [t["token"] for t in got["source"]] == [t.token for t in want.source]
        assert (got["attr_pos_start"], got["attr_pos_end"]) == (want.attr_pos_start, want.attr_pos_end)
        for side in ("source", "target"):
            expected = getattr(want, f"{side}_attributions")
            assert_scores_equal(
                side,
                matrix(got[f"{side}_attributions"]),
                None if expected is None else expected.float().numpy(),
                extra_null_rows=True,
            )
        np.testing.assert_allclose(
            np.array(got["step_scores"]["probability"], dtype=float),
            want.step_scores["probability"].float().numpy(),
            rtol=1e-4,
            atol=1e-6,
        )
