"""Aggregation chains against the reference library: each step of `schemas.aggregation`, run by
`schemas.scores.steps` on the reference's own unreduced scores, equals the reference's `aggregate(...)` with
the same arguments (tokens, positions, scores and step scores, 1e-4).

Both sides start from the same tensors (Inseq's granular output), so these tests isolate the chain arithmetic;
the engine's own unreduced scores are checked against Inseq's in `test_engine_parity.py`. The cases cover the
awkward ones the reference documents: `attr_pos_start` not 0 (decoder-only prompts), duplicate tokens, spans
that straddle the start of generation, encoder-decoder models with `attribute_target`, and `pair`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from schemas.aggregation import AggregationStep
from schemas.methods import METHOD_SPECS
from schemas.scores.sequence import SequenceScores
from schemas.scores.steps import ChainContext, run_chain
from tests.workers.parity import assert_scores_equal

pytestmark = pytest.mark.usefixtures("torch_single_thread")

STEPS: TypeAdapter[list[AggregationStep]] = TypeAdapter(list[AggregationStep])

# Repeated words give duplicate tokens; the forced targets continue the prompts.
CAUSAL_PROMPT = "the cat and the dog and the cat"
CAUSAL_TARGET = "the cat and the dog and the cat sat on the mat. the dog"
SOURCE = "the cat sat on the mat. the dog sat too."
TARGET = "the dog and the cat. the end"
STEP_SCORES = ["probability", "entropy"]
SYMBOLS = {model_id: ["▁"] for model_id in ("tiny-gpt2", "tiny-llama", "tiny-t5", "tiny-bart")}
"""The tiny tokenizers are word level with SentencePiece's '▁' (`tests/tiny_models.py`)."""


def _attribute(inseq_model: Callable[..., Any], model_id: str, method: str, target: str | None = None) -> Any:
    causal = model_id in ("tiny-gpt2", "tiny-llama")
    out = inseq_model(model_id, method).attribute(
        CAUSAL_PROMPT if causal else SOURCE,
        target or (CAUSAL_TARGET if causal else TARGET),
        attribute_target=not causal,
        step_scores=STEP_SCORES if method != "attention" else [],
        show_progress=False,
    )
    seq = out.sequence_attributions[0]
    # Word-level tokenizers have no subwords: every third token loses its '▁' on both sides of the
    # comparison, so that `subwords` has words of two and three pieces to merge.
    for tokens in (seq.source, seq.target):
        for i, token in enumerate(tokens or []):
            if i % 3 == 2:
                token.token = token.token.removeprefix("▁")
    return seq


def _scores(seq: Any) -> SequenceScores:
    """The reference's sequence output as the chain's input."""

    def tokens(items: Any) -> list[Any]:
        return [{"id": t.id, "token": t.token, "text": t.token} for t in items]

    def array(t: Any) -> np.ndarray | None:
        return None if t is None else t.detach().float().numpy().copy()

    return SequenceScores(
        source=tokens(seq.source),
        target=tokens(seq.target),
        attr_pos_start=seq.attr_pos_start,
        attr_pos_end=seq.attr_pos_end,
        source_scores=array(seq.source_attributions),
        target_scores=array(seq.target_attributions),
        step_scores={k: v.detach().float().numpy().copy() for k, v in (seq.step_scores or {}).items()},
    )


def _assert_same(got: SequenceScores, want: Any, step_scores: bool = True) -> None:
    assert [t["token"] for t in got.source] == [t.token for t in want.source]
    assert [t["token"] for t in got.target] == [t.token for t in want.target]
    assert [t["id"] for t in got.target] == [t.id for t in want.target]
    assert (got.attr_pos_start, got.attr_pos_end) == (want.attr_pos_start, want.attr_pos_end)
    for side in ("source", "target"):
        expected = getattr(want, f"{side}_attributions")
        assert_scores_equal(
            side,
            getattr(got, f"{side}_scores"),
            None if expected is None else expected.detach().float().numpy(),
        )
    if step_scores:
        assert set(got.step_scores) == set(want.step_scores or {})
        for name, values in (want.step_scores or {}).items():
            np.testing.assert_allclose(got.step_scores[name], values.float().numpy(), rtol=1e-4, atol=1e-6)


def _chain(start: SequenceScores, steps: list[dict[str, Any]], method: str, **context: Any) -> SequenceScores:
    ctx = ChainContext(METHOD_SPECS[method].default_aggregators, **context)
    return run_chain([start], STEPS.validate_python(steps), ctx)[0]


def _inseq_chain(seq: Any, calls: list[tuple[Any, dict[str, Any]]]) -> Any:
    for aggregator, kwargs in calls:
        seq = seq.aggregate(aggregator, do_post_aggregation_checks=False, **kwargs)
    return seq


def _target_spans(seq: Any) -> list[tuple[int, int]]:
    """Target spans covering two prompt tokens, one straddling the start of generation and one generated
    (decoder-only); two generated ones where generation starts at 0 or 1 (encoder-decoder)."""
    start = seq.attr_pos_start
    if start < 3:
        return [(start + 1, start + 3), (start + 4, start + 6)]
    return [(1, 3), (start - 1, start + 1), (start + 2, start + 4)]


MODELS = ["tiny-gpt2", "tiny-llama", "tiny-t5", "tiny-bart"]


def _cases(
    model_id: str, seq: Any
) -> list[tuple[str, list[tuple[Any, dict[str, Any]]], list[dict[str, Any]]]]:
    """(name, the reference's calls, the same chain as steps)."""
    symbols = SYMBOLS[model_id]
    target_spans = _target_spans(seq)
    source_spans = [(0, 2), (3, 6)] if seq.source_attributions is not None else None
    # The reference drops generated tokens when a slice starts inside the generated part (its
    # attr_pos_start turns negative); Seqattr keeps the generated part whole (test_slices_keep_generation).
    sliced = [target_spans[0]] if seq.attr_pos_start >= 3 else [(0, seq.attr_pos_start)]
    return [
        ("default", [(None, {})], [{"aggregator": "scores"}]),
        (
            "subwords",
            [(None, {}), ("subwords", {"special_chars": tuple(symbols)})],
            [{"aggregator": "scores"}, {"aggregator": "subwords", "special_chars": symbols}],
        ),
        (
            "subwords-suffix",
            [(None, {}), ("subwords", {"special_chars": tuple(symbols), "is_suffix_symbol": True})],
            [
                {"aggregator": "scores"},
                {"aggregator": "subwords", "special_chars": symbols, "is_suffix_symbol": True},
            ],
        ),
        (
            "subwords-first-then-sum",
            [("subwords", {"special_chars": tuple(symbols)}), ("sum", {})],
            [
                {"aggregator": "subwords", "special_chars": symbols},
                {"aggregator": "scores", "aggregate_fn": "sum"},
            ],
        ),
        (
            "spans",
            [
                ("scores", {"aggregate_fn": "sum"}),
                ("spans", {"source_spans": source_spans, "target_spans": target_spans}),
            ],
            [
                {"aggregator": "scores", "aggregate_fn": "sum"},
                {"aggregator": "spans", "source_spans": source_spans, "target_spans": target_spans},
            ],
        ),
        (
            "spans-mean",
            [
                ("scores", {"aggregate_fn": "absmax", "normalize": False}),
                ("spans", {"aggregate_fn": "mean", "target_spans": target_spans}),
            ],
            [
                {"aggregator": "scores", "aggregate_fn": "absmax", "normalize": False},
                {"aggregator": "spans", "target_spans": target_spans, "aggregate_fn": "mean"},
            ],
        ),
        *[
            (
                f"split-{mode}",
                [(None, {}), ("split", {"split_pattern": r"\.", "split_mode": mode})],
                [
                    {"aggregator": "scores"},
                    {"aggregator": "split", "split_pattern": r"\.", "split_mode": mode},
                ],
            )
            for mode in ("single", "start", "end")
        ],
        (
            "rescale-slices",
            [
                ("vnorm", {"rescale": True, "normalize": False}),
                ("slices", {"source_spans": source_spans, "target_spans": sliced}),
            ],
            [
                {"aggregator": "scores", "aggregate_fn": "vnorm", "rescale": True},
                {"aggregator": "slices", "source_spans": source_spans, "target_spans": sliced},
            ],
        ),
        (
            "select-unit",
            [("scores", {"aggregate_fn": "max", "select_idx": (2, 9)}), ("scores", {"select_idx": 0})],
            [
                {"aggregator": "scores", "aggregate_fn": "max", "select_idx": {"start": 2, "end": 9}},
                {"aggregator": "scores", "select_idx": 0},
            ],
        ),
    ]


@pytest.fixture(scope="module")
def saliency_outputs(inseq_model: Callable[..., Any]) -> dict[str, Any]:
    return {model_id: _attribute(inseq_model, model_id, "saliency") for model_id in MODELS}


@pytest.mark.parametrize("model_id", MODELS)
def test_chains_equal_the_reference(model_id: str, saliency_outputs: dict[str, Any]) -> None:
    seq = saliency_outputs[model_id]
    for name, calls, steps in _cases(model_id, seq):
        if name == "select-unit":
            continue  # a hidden-size selection: covered on attention below
        want = _inseq_chain(seq, calls)
        got = _chain(_scores(seq), steps, "saliency")
        if name != "default":  # every other chain merges or drops something
            assert len(got.target) < len(seq.target) or len(got.source) < len(seq.source), name
        try:
            _assert_same(got, want)
        except AssertionError as exc:
            raise AssertionError(f"{model_id}, chain {name}: {exc}") from exc


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-bart"])
def test_attention_unit_selection_and_two_reductions(model_id: str, inseq_model: Callable[..., Any]) -> None:
    seq = _attribute(inseq_model, model_id, "attention")
    start = _scores(seq)
    cases = {
        "default": ([(None, {})], [{"aggregator": "scores"}, {"aggregator": "scores"}]),
        "max-then-sum": (
            [("max", {}), ("sum", {})],
            [
                {"aggregator": "scores", "aggregate_fn": "max"},
                {"aggregator": "scores", "aggregate_fn": "sum"},
            ],
        ),
        "head-range-then-one-layer": (
            [("scores", {"aggregate_fn": "mean", "select_idx": (0, 2)}), ("scores", {"select_idx": 1})],
            [
                {"aggregator": "scores", "aggregate_fn": "mean", "select_idx": {"start": 0, "end": 2}},
                {"aggregator": "scores", "select_idx": 1},
            ],
        ),
        "heads-list-then-subwords": (
            [
                ("scores", {"aggregate_fn": "absmax", "select_idx": [0, 1]}),
                ("mean", {}),
                ("subwords", {"special_chars": tuple(SYMBOLS[model_id])}),
            ],
            [
                {"aggregator": "scores", "aggregate_fn": "absmax", "select_idx": [0, 1]},
                {"aggregator": "scores", "aggregate_fn": "mean"},
                {"aggregator": "subwords", "special_chars": SYMBOLS[model_id]},
            ],
        ),
    }
    for name, (calls, steps) in cases.items():
        want = _inseq_chain(seq, calls)
        got = _chain(start, steps, "attention")
        try:
            _assert_same(got, want, step_scores=False)
        except AssertionError as exc:
            raise AssertionError(f"{model_id}, chain {name}: {exc}") from exc


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_pair_equals_the_reference(model_id: str, inseq_model: Callable[..., Any]) -> None:
    """`pair` with another attribution of the same shape: here integrated gradients of the same texts."""
    seq = _attribute(inseq_model, model_id, "saliency")
    other = _attribute(inseq_model, model_id, "integrated_gradients")
    want = seq.aggregate().aggregate("pair", paired_attr=other.aggregate(), do_post_aggregation_checks=False)
    got = _chain(
        _scores(seq),
        [{"aggregator": "scores"}, {"aggregator": "pair", "paired_job_id": "other"}],
        "saliency",
        paired=lambda job_id: [_scores(other)] if job_id == "other" else [],
    )
    _assert_same(got, want)
    # Tokens that differ show both sides, as the reference's `aggregate_token_pair` does.
    different = _attribute(inseq_model, model_id, "saliency", target=_swapped_target(model_id))
    want = seq.aggregate().aggregate(
        "pair", paired_attr=different.aggregate(), do_post_aggregation_checks=False
    )
    got = _chain(
        _scores(seq),
        [{"aggregator": "scores"}, {"aggregator": "pair", "paired_job_id": "x"}],
        "saliency",
        paired=lambda _: [_scores(different)],
    )
    _assert_same(got, want)
    assert any(" → " in t["token"] for t in got.target)


def _swapped_target(model_id: str) -> str:
    """A target of the same token length as the usual one, one word changed."""
    if model_id in ("tiny-gpt2", "tiny-llama"):
        return CAUSAL_PROMPT + CAUSAL_TARGET.removeprefix(CAUSAL_PROMPT).replace("dog", "cat")
    return TARGET.replace("dog", "cat")


def test_slices_keep_generation(saliency_outputs: dict[str, Any]) -> None:
    """A target slice that starts inside the generated part keeps all of it (every step keeps its column and
    its generated token), where the reference would drop the first generated tokens."""
    seq = _scores(saliency_outputs["tiny-t5"])
    start, end = seq.attr_pos_start, seq.attr_pos_end
    got = _chain(
        seq,
        [{"aggregator": "scores"}, {"aggregator": "slices", "target_spans": [(start + 1, start + 3)]}],
        "saliency",
    )
    assert got.target == seq.target[start:end]
    assert (got.attr_pos_start, got.attr_pos_end) == (0, end - start)
    assert got.target_scores is not None and got.target_scores.shape == (end - start, end - start)
