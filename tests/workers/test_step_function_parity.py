"""Parity of step functions and contrastive attribution with the reference library (Inseq 0.7.1, the oracle)
on the tiny test models: every step function as a step score, with and without contrastive inputs, and as
the attributed function of `saliency` and `integrated_gradients`.

Left to `test_step_functions.py` (formulas computed in the test) where the oracle fails or differs on
purpose: `crossentropy` / `perplexity` as step scores (Inseq crashes on a batch of one), `perplexity` itself
(Inseq computes 2 ** crossentropy-in-nats), `mc_dropout_prob_avg` (random; NaN without dropout), and
`kl_divergence` with top-k/top-p (NaN in Inseq). Contrastive attributed functions with integrated gradients
fail in Inseq (its contrastive batch must match the expanded batch), so they are compared with saliency only.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.workers.parity import (
    CAUSAL,
    MODELS,
    SEQ2SEQ,
    assert_sequence_matches,
    engine_request,
    expected_sequences,
    inseq_attribute,
    parity_inputs,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CONTRASTIVE = [
    "contrast_logits",
    "contrast_prob",
    "contrast_logits_diff",
    "contrast_prob_diff",
    "pcxmi",
    "kl_divergence",
    "in_context_pvi",
]
CAUSAL_CONTRAST = "His colleagues asked him to come to work. The cat laughed"
"""Another length than the forced causal target (so the default alignment matters), another token at every
attributed step."""
SEQ2SEQ_CONTRAST = "The old man walked slowly home."
CONTRAST_SOURCE = "Birds sing in the tall trees."


def _contrast(model_id: str) -> str:
    return CAUSAL_CONTRAST if model_id in CAUSAL else SEQ2SEQ_CONTRAST


def _compare(
    inseq_model: Any,
    run_engine: Any,
    model_id: str,
    method: str,
    step_scores: list[str],
    engine_fields: dict[str, Any],
    inseq_kwargs: dict[str, Any],
) -> None:
    inputs, targets = parity_inputs(model_id)
    out = inseq_attribute(
        inseq_model, model_id, method, inputs, targets, step_scores=step_scores, **inseq_kwargs
    )
    got = run_engine(
        **engine_request(
            model_id, method, inputs, generated_texts=targets, step_scores=step_scores, **engine_fields
        )
    )
    [seq], [want] = got["sequences"], expected_sequences(out)
    if seq["contrast_target"] is not None:
        _check_contrast_marks(seq, want)
        fn = engine_fields.get("attributed_fn", "probability")
        if fn in CONTRASTIVE:
            forced = bool(engine_fields.get("attributed_fn_args", {}).get("contrast_force_inputs"))
            _drop_constant_columns(seq, want, fn, forced)
    assert_sequence_matches(seq, want, step_scores=step_scores)


def _drop_constant_columns(seq: dict[str, Any], want: dict[str, Any], fn: str, forced: bool) -> None:
    """Drop the steps where the attributed function is a constant 0: the same token is read on both sides
    (from the same forward, or from an identical contrastive prefix), or, for kl_divergence, the contrastive
    prefix is the original one. Their gradient is rounding noise, which each side normalises differently."""
    ids, contrast = [t["id"] for t in seq["target"]], [t["id"] for t in seq["contrast_target"]]
    positions = range(seq["attr_pos_start"], seq["attr_pos_end"])
    keep = []
    for k, (p, j) in enumerate(zip(positions, seq["contrast_positions"], strict=True)):
        same_prefix = contrast[:j] == ids[:p] and seq["contrast_source"] is None
        same_token = contrast[j] == ids[p]
        constant = (same_prefix and (same_token or fn == "kl_divergence")) if forced else same_token
        if not constant:
            keep.append(k)
    assert keep, "the contrast should differ from the target at some step"
    for name in ("source_attributions", "target_attributions"):
        if seq[name] is not None:
            seq[name] = [[row[k] for k in keep] for row in seq[name]]
            want[name] = want[name][:, keep]


def _check_contrast_marks(seq: dict[str, Any], want: dict[str, Any]) -> None:
    """The oracle marks a target token that differs from its aligned contrast token with id -1 ("a → b"):
    those marks must fall exactly where the engine's alignment pairs different tokens."""
    ids = [t["id"] for t in seq["target"]]
    contrast = [t["id"] for t in seq["contrast_target"]]
    positions = range(seq["attr_pos_start"], seq["attr_pos_end"])
    differs = {p for p, j in zip(positions, seq["contrast_positions"], strict=True) if contrast[j] != ids[p]}
    assert {p for p, i in enumerate(want["target"]) if i == -1} == differs
    want["target"] = [ids[p] if i == -1 else i for p, i in enumerate(want["target"])]


@pytest.mark.parametrize("model_id", MODELS)
def test_plain_step_scores(inseq_model, run_engine, model_id: str) -> None:
    names = ["logit", "probability", "entropy", "top_p_size"]
    _compare(
        inseq_model,
        run_engine,
        model_id,
        "saliency",
        names,
        {"step_scores_args": {"top_p_size": {"top_p": 0.9}}},
        {"top_p": 0.9},
    )


@pytest.mark.parametrize("model_id", MODELS)
def test_contrastive_step_scores(inseq_model, run_engine, model_id: str) -> None:
    contrast = [_contrast(model_id)]
    _compare(
        inseq_model,
        run_engine,
        model_id,
        "saliency",
        CONTRASTIVE,
        {"contrast_targets": contrast},
        {"contrast_targets": contrast},
    )


@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_contrast_sources(inseq_model, run_engine, model_id: str) -> None:
    fields = {"contrast_sources": [CONTRAST_SOURCE]}
    names = ["contrast_prob", "pcxmi", "kl_divergence"]
    _compare(inseq_model, run_engine, model_id, "saliency", names, fields, dict(fields))
    both = {"contrast_sources": [CONTRAST_SOURCE], "contrast_targets": [SEQ2SEQ_CONTRAST]}
    _compare(inseq_model, run_engine, model_id, "saliency", names, both, dict(both))


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize(
    ("fn", "fn_args"),
    [("logit", {}), ("entropy", {}), ("probability", {"logprob": True})],
)
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_attributed_functions(
    inseq_model, run_engine, model_id: str, method: str, fn: str, fn_args: dict[str, Any]
) -> None:
    fields = {"attributed_fn": fn, "attributed_fn_args": fn_args}
    _compare(inseq_model, run_engine, model_id, method, [], fields, dict(fields))


@pytest.mark.parametrize("model_id", MODELS)
def test_attributed_crossentropy_with_integrated_gradients(inseq_model, run_engine, model_id: str) -> None:
    # Inseq's crossentropy crashes on a batch of one; integrated gradients' interpolation batch avoids that.
    fields = {"attributed_fn": "crossentropy"}
    _compare(inseq_model, run_engine, model_id, "integrated_gradients", [], fields, dict(fields))


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("fn", ["contrast_prob_diff", "contrast_logits_diff", "pcxmi", "in_context_pvi"])
def test_attributed_contrastive_functions(inseq_model, run_engine, model_id: str, fn: str) -> None:
    contrast = [_contrast(model_id)]
    fields = {"attributed_fn": fn, "contrast_targets": contrast}
    _compare(inseq_model, run_engine, model_id, "saliency", ["contrast_prob_diff"], fields, dict(fields))


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_attributed_kl_divergence_on_forced_contrastive_inputs(
    inseq_model, run_engine, model_id: str
) -> None:
    contrast = [_contrast(model_id)]
    engine = {
        "attributed_fn": "kl_divergence",
        "attributed_fn_args": {"contrast_force_inputs": True},
        "contrast_targets": contrast,
    }
    oracle = {"attributed_fn": "kl_divergence", "contrast_force_inputs": True, "contrast_targets": contrast}
    _compare(inseq_model, run_engine, model_id, "saliency", [], engine, oracle)
