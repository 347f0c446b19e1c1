"""Step functions and contrastive inputs against values computed directly in the test, from the model's own
forward over each step's prefix (no engine code, no batching trick): every formula, the neutral contrast,
alignment, top-k/top-p filtering, Monte Carlo dropout, and the text options."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from schemas.errors import InvalidRequestError
from tests.result_shape import assert_valid_result

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CAUSAL = ["tiny-gpt2", "tiny-llama"]
SEQ2SEQ = ["tiny-t5", "tiny-bart"]
PROMPT = "The cat sat on the"
TARGET = "The cat sat on the mat. A dog barked"
CONTRAST = "His colleagues asked him to come to the mat. A dog laughed"
"""A contrast text of another length than TARGET (decoder-only: prompt included)."""
SOURCE = "The cat sat on the mat."
SEQ2SEQ_TARGET = "A dog barked at the mailman."
SEQ2SEQ_CONTRAST = "The dog laughed at the mailman."
CONTRAST_SOURCE = "The old man walked slowly home."


def _request(model_id: str, **fields: Any) -> dict[str, Any]:
    causal = model_id in CAUSAL
    request: dict[str, Any] = {
        "model": model_id,
        "inputs": [PROMPT if causal else SOURCE],
        "generated_texts": [TARGET if causal else SEQ2SEQ_TARGET],
    }
    request.update(fields)
    return request


def _ids(tokens: list[dict[str, Any]]) -> list[int]:
    return [t["id"] for t in tokens]


def _next_logits(loaded: Any, source: list[int] | None, prefix: list[int]) -> torch.Tensor:
    """Logits of the token after `prefix`, from a plain forward over that prefix alone."""
    with torch.no_grad():
        decoder = torch.tensor([prefix])
        if source is None:
            return loaded.model(input_ids=decoder).logits[0, -1].double()
        return (
            loaded.model(input_ids=torch.tensor([source]), decoder_input_ids=decoder).logits[0, -1].double()
        )


def _steps(loaded: Any, seq: dict[str, Any], causal: bool) -> list[tuple[torch.Tensor, int]]:
    """(logits, target id) of every attributed step, one plain forward per step."""
    source = None if causal else _ids(seq["source"])
    target = _ids(seq["target"])
    return [
        (_next_logits(loaded, source, target[:p]), target[p])
        for p in range(seq["attr_pos_start"], seq["attr_pos_end"])
    ]


def _contrast_steps(loaded: Any, seq: dict[str, Any], causal: bool) -> list[tuple[torch.Tensor, int]]:
    source = None if causal else _ids(seq["contrast_source"] or seq["source"])
    target = _ids(seq["contrast_target"] or seq["target"])
    return [(_next_logits(loaded, source, target[:j]), target[j]) for j in seq["contrast_positions"]]


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor, keep: torch.Tensor | None = None) -> float:
    if keep is not None:
        p_logits = p_logits.masked_fill(~keep, -math.inf)
        q_logits = q_logits.masked_fill(~keep, -math.inf)
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    mask = p > 0
    return float((p[mask] * (p[mask].log() - q[mask].log())).sum())


def _close(got: list[Any], want: list[float], name: str, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.array(got, dtype=float), np.array(want), rtol=1e-4, atol=atol, err_msg=name)


@pytest.mark.parametrize("model_id", CAUSAL + SEQ2SEQ)
def test_plain_step_scores_match_their_formulas(run_engine, engine_model, model_id: str) -> None:
    causal = model_id in CAUSAL
    result = run_engine(
        **_request(
            model_id,
            step_scores=["logit", "probability", "entropy", "crossentropy", "perplexity", "top_p_size"],
            step_scores_args={"top_p_size": {"top_p": 0.5}},
        )
    )
    assert_valid_result({k: v for k, v in result.items() if k != "_progress"})
    [seq] = result["sequences"]
    steps = _steps(engine_model(model_id), seq, causal)
    scores = seq["step_scores"]
    logprobs = [lg.log_softmax(-1) for lg, _ in steps]
    _close(scores["logit"], [float(lg[t]) for lg, t in steps], "logit", atol=1e-4)
    _close(
        scores["probability"],
        [float(lp[t].exp()) for lp, (_, t) in zip(logprobs, steps, strict=True)],
        "probability",
    )
    _close(scores["entropy"], [float(-(lp.exp() * lp).sum()) for lp in logprobs], "entropy", atol=1e-4)
    ce = [float(-lp[t]) for lp, (_, t) in zip(logprobs, steps, strict=True)]
    _close(scores["crossentropy"], ce, "crossentropy", atol=1e-4)
    _close(scores["perplexity"], [math.exp(c) for c in ce], "perplexity = exp(crossentropy)", atol=1e-3)
    nucleus = []
    for lp in logprobs:
        probs = np.sort(lp.exp().numpy())[::-1]
        nucleus.append(int(np.searchsorted(np.cumsum(probs), 0.5) + 1))
    assert scores["top_p_size"] == nucleus


@pytest.mark.parametrize("model_id", CAUSAL + SEQ2SEQ)
def test_contrast_with_itself_changes_nothing(run_engine, model_id: str) -> None:
    causal = model_id in CAUSAL
    same = TARGET if causal else SEQ2SEQ_TARGET
    contrastive = ["contrast_prob_diff", "contrast_logits_diff", "kl_divergence", "pcxmi", "in_context_pvi"]
    result = run_engine(
        **_request(
            model_id,
            contrast_targets=[same],
            step_scores=["probability", "logit", "contrast_prob", "contrast_logits", *contrastive],
        )
    )
    [seq] = result["sequences"]
    scores = seq["step_scores"]
    for name in contrastive:
        _close(scores[name], [0.0] * len(scores[name]), name, atol=1e-5)
    _close(scores["contrast_prob"], scores["probability"], "contrast_prob")
    _close(scores["contrast_logits"], scores["logit"], "contrast_logits", atol=1e-4)
    assert seq["contrast_positions"] == list(range(seq["attr_pos_start"], seq["attr_pos_end"]))


@pytest.mark.parametrize("model_id", CAUSAL + SEQ2SEQ)
def test_contrast_step_scores_read_each_contrast_prefix(run_engine, engine_model, model_id: str) -> None:
    causal = model_id in CAUSAL
    fields: dict[str, Any] = {"contrast_targets": [CONTRAST if causal else SEQ2SEQ_CONTRAST]}
    if not causal:
        fields["contrast_sources"] = [CONTRAST_SOURCE]
    names = [
        "contrast_logits",
        "contrast_prob",
        "contrast_prob_diff",
        "pcxmi",
        "kl_divergence",
        "in_context_pvi",
    ]
    result = run_engine(**_request(model_id, step_scores=names, **fields))
    [seq] = result["sequences"]
    loaded = engine_model(model_id)
    n_contrast, end = len(seq["contrast_target"]), seq["attr_pos_end"]
    # Default alignment: 1:1 from the end of both sequences.
    assert seq["contrast_positions"] == [n_contrast - (end - p) for p in range(seq["attr_pos_start"], end)]
    steps, c_steps = _steps(loaded, seq, causal), _contrast_steps(loaded, seq, causal)
    p = [float(lg.softmax(-1)[t]) for lg, t in steps]
    pc = [float(lg.softmax(-1)[t]) for lg, t in c_steps]
    scores = seq["step_scores"]
    _close(scores["contrast_logits"], [float(lg[t]) for lg, t in c_steps], "contrast_logits", atol=1e-4)
    _close(scores["contrast_prob"], pc, "contrast_prob")
    _close(scores["contrast_prob_diff"], [a - b for a, b in zip(p, pc, strict=True)], "contrast_prob_diff")
    _close(scores["pcxmi"], [-math.log2(a / b) for a, b in zip(p, pc, strict=True)], "pcxmi", atol=1e-4)
    _close(
        scores["in_context_pvi"],
        [-math.log(a) + math.log(b) for a, b in zip(p, pc, strict=True)],
        "in_context_pvi",
        1e-4,
    )
    kl = [_kl(lg, c_lg) for (lg, _), (c_lg, _) in zip(steps, c_steps, strict=True)]
    _close(scores["kl_divergence"], kl, "kl_divergence", atol=1e-5)


def test_kl_divergence_filters_on_the_merged_logits(run_engine, engine_model) -> None:
    result = run_engine(
        **_request(
            "tiny-gpt2",
            contrast_targets=[CONTRAST],
            step_scores=["kl_divergence"],
            step_scores_args={"kl_divergence": {"top_k": 5, "top_p": 0.8}},
        )
    )
    [seq] = result["sequences"]
    loaded = engine_model("tiny-gpt2")
    want = []
    for (lg, _), (c_lg, _) in zip(_steps(loaded, seq, True), _contrast_steps(loaded, seq, True), strict=True):
        merged = lg + c_lg
        order = merged.argsort(descending=True)
        mass = merged.softmax(-1)[order].cumsum(-1)
        n_top_p = int((mass < 0.8).sum()) + 1  # the smallest set with mass >= top_p
        keep = torch.zeros_like(merged, dtype=torch.bool)
        keep[order[: min(n_top_p, 5)]] = True  # then the 5 largest of what is left
        want.append(_kl(lg, c_lg, keep))
    _close(seq["step_scores"]["kl_divergence"], want, "filtered kl_divergence")
    assert all(v is not None and math.isfinite(v) for v in seq["step_scores"]["kl_divergence"])


def test_explicit_alignments_and_a_pair_that_does_not_fit(run_engine) -> None:
    request = _request("tiny-gpt2", contrast_targets=[CONTRAST], step_scores=["contrast_prob"])
    [seq] = run_engine(**request)["sequences"]
    start, end = seq["attr_pos_start"], seq["attr_pos_end"]
    pairs = [(start, 3), (start, 4), (start + 1, 3)]  # start takes 3; start + 1 has only 3, taken: keeps it
    [seq] = run_engine(**{**request, "contrast_targets_alignments": [pairs]})["sequences"]
    n_contrast = len(seq["contrast_target"])
    rest = [n_contrast - (end - p) for p in range(start + 2, end)]
    assert seq["contrast_positions"] == [3, 3, *rest]
    with pytest.raises(InvalidRequestError, match=r"\[0\]\[1\] = \(6, 99\) does not fit"):
        run_engine(**{**request, "contrast_targets_alignments": [[(5, 2), (6, 99)]]})
    with pytest.raises(InvalidRequestError, match="position 0 has nothing before it"):
        run_engine(**{**request, "contrast_targets_alignments": [[(start, 0)]]})


def test_contrast_sources_need_an_encoder_decoder(run_engine) -> None:
    with pytest.raises(InvalidRequestError, match="contrast_sources are for encoder-decoder models"):
        run_engine(**_request("tiny-gpt2", contrast_sources=["Hello"], step_scores=["pcxmi"]))


def test_contrastive_attribution_with_itself_is_zero(run_engine) -> None:
    result = run_engine(
        **_request(
            "tiny-gpt2", method="saliency", attributed_fn="contrast_prob_diff", contrast_targets=[TARGET]
        )
    )
    [seq] = result["sequences"]
    cells = [c for row in seq["target_attributions"] for c in row if c is not None]
    assert cells and max(abs(c) for c in cells) < 1e-6


def test_mc_dropout_with_and_without_dropout(run_engine, engine_model) -> None:
    fields = {
        "step_scores": ["mc_dropout_prob_avg"],
        "step_scores_args": {"mc_dropout_prob_avg": {"seed": 7}},
    }
    # tiny-gpt2 has dropout 0.1 (active in training mode): finite, seeded, reproducible.
    first = run_engine(**_request("tiny-gpt2", **fields))
    again = run_engine(**_request("tiny-gpt2", **fields))
    other = {**fields, "step_scores_args": {"mc_dropout_prob_avg": {"seed": 8}}}
    third = run_engine(**_request("tiny-gpt2", **other))
    values = first["sequences"][0]["step_scores"]["mc_dropout_prob_avg"]
    assert all(v is not None and math.isfinite(v) for v in values)
    assert values == again["sequences"][0]["step_scores"]["mc_dropout_prob_avg"]
    assert values != third["sequences"][0]["step_scores"]["mc_dropout_prob_avg"]
    assert first["info"]["warnings"] == []
    assert not engine_model("tiny-gpt2").model.training  # back in eval mode
    # tiny-llama has no dropout: null scores and a warning, not NaN.
    result = run_engine(**_request("tiny-llama", **fields))
    assert set(result["sequences"][0]["step_scores"]["mc_dropout_prob_avg"]) == {None}
    assert "no active dropout" in result["info"]["warnings"][0]
    with pytest.raises(InvalidRequestError, match="no active dropout"):
        run_engine(**_request("tiny-llama", attributed_fn="mc_dropout_prob_avg"))
    attributed = run_engine(**_request("tiny-gpt2", attributed_fn="mc_dropout_prob_avg"))
    cells = [c for row in attributed["sequences"][0]["target_attributions"] for c in row if c is not None]
    assert cells and all(math.isfinite(c) for c in cells)


def test_generate_from_target_prefix(run_engine) -> None:
    prefix = "The cat sat on the mat."
    result = run_engine(
        model="tiny-gpt2",
        inputs=[PROMPT],
        generated_texts=[prefix],
        generate_from_target_prefix=True,
        generation_args={"max_new_tokens": 3},
    )
    [seq] = result["sequences"]
    forced = run_engine(model="tiny-gpt2", inputs=[PROMPT], generated_texts=[prefix])["sequences"][0]
    assert _ids(seq["target"])[: len(forced["target"])] == _ids(forced["target"])
    assert len(seq["target"]) == len(forced["target"]) + 3
    assert seq["attr_pos_start"] == len(seq["source"])
    result = run_engine(
        model="tiny-bart",
        inputs=[SOURCE],
        generated_texts=["A dog"],
        generate_from_target_prefix=True,
        generation_args={"max_new_tokens": 4},
    )
    [seq] = result["sequences"]
    words = [t["token"] for t in seq["target"] if t["token"] not in ("<s>", "</s>")]
    assert words[:2] == ["▁A", "▁dog"], words  # after the decoder start (and BART's <s>): the prefix
    assert len(words) > 2


def test_skip_special_tokens_and_clean_special_chars(run_engine) -> None:
    plain = run_engine(model="tiny-llama", inputs=[PROMPT], generated_texts=[TARGET])["sequences"][0]
    assert plain["source"][0]["token"] == "<s>"
    skipped = run_engine(
        model="tiny-llama",
        inputs=[PROMPT],
        generated_texts=[TARGET],
        skip_special_tokens=True,
        clean_special_chars=True,
    )["sequences"][0]
    assert _ids(skipped["source"]) == _ids(plain["source"])[1:]
    assert all("▁" not in t["token"] for t in skipped["target"])
    assert [t["token"].strip() for t in skipped["target"]] == [
        t["token"].strip("▁") for t in plain["target"][1:]
    ]
    t5 = run_engine(
        model="tiny-t5", inputs=[SOURCE], generated_texts=[SEQ2SEQ_TARGET], skip_special_tokens=True
    )
    assert t5["sequences"][0]["source"][-1]["token"] != "</s>"


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-bart"])
@pytest.mark.parametrize("force", [False, True])
def test_contrastive_integrated_gradients(run_engine, model_id: str, force: bool) -> None:
    # The reference cannot run this (its contrastive batch must match the interpolation batch).
    contrast = CONTRAST if model_id in CAUSAL else SEQ2SEQ_CONTRAST
    result = run_engine(
        **_request(
            model_id,
            method="integrated_gradients",
            method_args={"n_steps": 4},
            attributed_fn="contrast_prob_diff",
            attributed_fn_args={"contrast_force_inputs": force},
            contrast_targets=[contrast],
        )
    )
    [seq] = result["sequences"]
    matrix = seq["target_attributions"] if model_id in CAUSAL else seq["source_attributions"]
    sums = [sum(c for c in column if c is not None) for column in zip(*matrix, strict=True)]
    # Each step's column sums to 1, or is 0 where the contrast token is the target's (a constant 0 function).
    assert all(abs(total - 1) < 1e-4 or abs(total) < 1e-6 for total in sums), sums
    assert sum(abs(total - 1) < 1e-4 for total in sums) >= 1


def test_too_short_contrast_targets_are_refused(run_engine) -> None:
    with pytest.raises(InvalidRequestError, match="needs a token after its first"):
        run_engine(**_request("tiny-gpt2", contrast_targets=["mat."], step_scores=["contrast_prob"]))


def test_a_forced_contrastive_side_alone_attributes_nothing(run_engine) -> None:
    # contrast_prob on forced contrastive inputs of a decoder-only model does not depend on the attributed
    # inputs: every attribution is 0 (not a crash).
    result = run_engine(
        **_request(
            "tiny-gpt2",
            attributed_fn="contrast_prob",
            attributed_fn_args={"contrast_force_inputs": True},
            contrast_targets=[CONTRAST],
        )
    )
    cells = [c for row in result["sequences"][0]["target_attributions"] for c in row if c is not None]
    assert cells and all(c == 0 for c in cells)


def test_contrast_sources_alone_warn_that_the_default_attribution_is_zero(run_engine) -> None:
    result = run_engine(
        **_request("tiny-bart", attributed_fn="contrast_prob_diff", contrast_sources=[CONTRAST_SOURCE])
    )
    assert any("attributions are 0" in warning for warning in result["info"]["warnings"])
