"""Parity of the engine with the reference library (Inseq 0.7.1, the oracle) on the tiny test models.

Every case runs the same attribution through `inseq` and through `workers.engine.run.run_attribution`, then
compares token ids, attributed positions, the default-aggregated scores (L2 over the hidden size, or the
mean over layers and heads for attention; each step's column scaled to sum 1; NaN/null at and after the
step's own position) and the step scores.

Reference-library conventions these tests rely on:
- decoder-only: `source` is the prompt, `target` is prompt + continuation, `source_attributions` is null and
  `target_attributions` is [len(target)][n_attributed]; attributed positions default to the continuation.
- encoder-decoder: `target` = [decoder_start_token_id] + tokenizer(text_target=text) (special tokens
  included), positions default to [1, len(target)); `target_attributions` only with `attribute_target`.
- The oracle's own quirks are worked around (and asserted where it matters), never copied:
  * decoder-only, one input, tokenizer that adds BOS: Inseq decodes the generation *with* special tokens and
    then fails its own "generation starts with the prompt" check, so its greedy text is taken from
    `generate(skip_special_tokens=True)` and attributed as a forced target;
  * decoder-only, several inputs, greedy: Inseq left-pads the batch without shifting position ids, so its
    scores differ from one-input runs; each input is compared with a one-input Inseq run;
  * encoder-decoder with `attr_pos_end`: Inseq attributes [start, end] (end included) and reports a wrong
    `attr_pos_start`; the engine's [start, end) is compared with the columns of a full Inseq run;
  * decoder-only with `attr_pos_end`: Inseq drops the target rows from `attr_pos_end` on and makes `source`
    the target up to `attr_pos_start`; the engine keeps every target row (null past the step) and the prompt.
"""

from __future__ import annotations

import pytest

from tests.workers.parity import (
    CAUSAL,
    METHODS,
    MODELS,
    SEQ2SEQ,
    SEQ2SEQ_TARGETS,
    SOURCES,
    STEP_SCORES,
    assert_sequence_matches,
    assert_step_scores_equal,
    engine_request,
    expected_sequences,
    inseq_attribute,
    inseq_step_scores,
    parity_inputs,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# ---------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("mode", ["forced", "greedy"])
def test_parity(run_engine, inseq_model, model_id: str, method: str, mode: str) -> None:
    inputs, targets = parity_inputs(model_id)
    forced = targets if mode == "forced" else None
    scores = STEP_SCORES if method != "attention" else []
    out = inseq_attribute(inseq_model, model_id, method, inputs, forced, step_scores=scores)
    want = expected_sequences(out)
    got = run_engine(**engine_request(model_id, method, inputs, generated_texts=forced, step_scores=scores))
    assert len(got["sequences"]) == len(want) == 1
    assert_sequence_matches(got["sequences"][0], want[0], step_scores=scores)


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_parity_attention_step_scores(run_engine, inseq_model, model_id: str) -> None:
    """The engine computes step scores with attention too (Inseq refuses: they come from its dummy method)."""
    inputs, targets = parity_inputs(model_id)
    out = inseq_attribute(inseq_model, model_id, "attention", inputs, targets)
    want = inseq_step_scores(inseq_model, model_id, out)
    got = run_engine(
        **engine_request(model_id, "attention", inputs, generated_texts=targets, step_scores=STEP_SCORES)
    )
    assert_step_scores_equal(got["sequences"][0]["step_scores"], want[0], STEP_SCORES)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_parity_attribute_target(run_engine, inseq_model, model_id: str, method: str) -> None:
    inputs, targets = parity_inputs(model_id)
    scores = STEP_SCORES if method != "attention" else []
    out = inseq_attribute(
        inseq_model, model_id, method, inputs, targets, step_scores=scores, attribute_target=True
    )
    want = expected_sequences(out)
    assert want[0]["target_attributions"] is not None
    got = run_engine(
        **engine_request(
            model_id, method, inputs, generated_texts=targets, step_scores=scores, attribute_target=True
        )
    )
    assert_sequence_matches(got["sequences"][0], want[0], step_scores=scores)


@pytest.mark.parametrize("method", ["integrated_gradients"])
@pytest.mark.parametrize("model_id", SEQ2SEQ)
@pytest.mark.parametrize("attribute_target", [False, True])
def test_parity_include_eos_baseline(
    run_engine, inseq_model, model_id: str, method: str, attribute_target: bool
):
    inputs, targets = parity_inputs(model_id)
    kwargs = {"include_eos_baseline": True, "attribute_target": attribute_target}
    want = expected_sequences(inseq_attribute(inseq_model, model_id, method, inputs, targets, **kwargs))
    got = run_engine(**engine_request(model_id, method, inputs, generated_texts=targets, **kwargs))
    assert_sequence_matches(got["sequences"][0], want[0])


@pytest.mark.parametrize("method", ["saliency", "attention"])
@pytest.mark.parametrize("model_id", CAUSAL)
@pytest.mark.parametrize("span", ["inside", "from_the_prompt"])
def test_parity_attr_pos_decoder_only(
    run_engine, inseq_model, engine_model, model_id: str, method: str, span: str
) -> None:
    """A span inside the continuation, or one starting in the prompt (raised to the prompt length)."""
    inputs, targets = parity_inputs(model_id)
    prompt = engine_model(model_id).tokenizer(inputs[0]).input_ids
    start, end = (len(prompt) + 1, len(prompt) + 3) if span == "inside" else (1, len(prompt) + 2)
    scores = STEP_SCORES if method != "attention" else []
    out = inseq_attribute(
        inseq_model,
        model_id,
        method,
        inputs,
        targets,
        step_scores=scores,
        attr_pos_start=start,
        attr_pos_end=end,
    )
    want = expected_sequences(out)[0]
    assert (want["attr_pos_start"], want["attr_pos_end"]) == (max(start, len(prompt)), end)
    got = run_engine(
        **engine_request(
            model_id,
            method,
            inputs,
            generated_texts=targets,
            step_scores=scores,
            attr_pos_start=start,
            attr_pos_end=end,
        )
    )["sequences"][0]
    # Inseq's source here is target[:attr_pos_start]; the engine's is the prompt (API: "for decoder-only
    # models, the prompt").
    assert [t["id"] for t in got["source"]] == prompt
    assert want["source"] == want["target"][: want["attr_pos_start"]]
    assert_sequence_matches(got, want, step_scores=scores, extra_null_rows=True, check_source=False)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "attention"])
@pytest.mark.parametrize("mode", ["forced", "greedy"])
def test_parity_marian(run_engine, inseq_model, method: str, mode: str) -> None:
    """Marian: decoder starts with <pad>, targets end with </s> (like T5) and the embeddings are its own."""
    model_id = "tiny-marian"
    inputs, targets = SOURCES[:1], SEQ2SEQ_TARGETS[:1]
    forced = targets if mode == "forced" else None
    scores = STEP_SCORES if method != "attention" else []
    want = expected_sequences(
        inseq_attribute(inseq_model, model_id, method, inputs, forced, step_scores=scores)
    )
    got = run_engine(**engine_request(model_id, method, inputs, generated_texts=forced, step_scores=scores))
    assert_sequence_matches(got["sequences"][0], want[0], step_scores=scores)


@pytest.mark.parametrize("method", ["saliency", "attention"])
@pytest.mark.parametrize("model_id", SEQ2SEQ)
@pytest.mark.parametrize("attribute_target", [False, True])
def test_parity_attr_pos_encoder_decoder(
    run_engine, inseq_model, model_id: str, method: str, attribute_target: bool
) -> None:
    """Engine positions [2, 4) == columns 1..2 of a full Inseq run (Inseq itself would attribute 2..4)."""
    inputs, targets = parity_inputs(model_id)
    start, end = 2, 4
    scores = STEP_SCORES if method != "attention" else []
    full = expected_sequences(
        inseq_attribute(
            inseq_model,
            model_id,
            method,
            inputs,
            targets,
            step_scores=scores,
            attribute_target=attribute_target,
        )
    )[0]
    assert full["attr_pos_start"] == 1
    cols = slice(start - full["attr_pos_start"], end - full["attr_pos_start"])
    want = {
        **full,
        "attr_pos_start": start,
        "attr_pos_end": end,
        "source_attributions": full["source_attributions"][:, cols],
        "target_attributions": None
        if full["target_attributions"] is None
        else full["target_attributions"][:, cols],
        "step_scores": {k: v[cols] for k, v in full["step_scores"].items()},
    }
    got = run_engine(
        **engine_request(
            model_id,
            method,
            inputs,
            generated_texts=targets,
            step_scores=scores,
            attr_pos_start=start,
            attr_pos_end=end,
            attribute_target=attribute_target,
        )
    )["sequences"][0]
    assert_sequence_matches(got, want, step_scores=scores)


@pytest.mark.parametrize("mode", ["forced", "greedy"])
@pytest.mark.parametrize("model_id", MODELS)
def test_parity_several_inputs(run_engine, inseq_model, model_id: str, mode: str) -> None:
    """Two inputs in one request == Inseq on each input alone (and Inseq's own batching where it is sound)."""
    method = "saliency"
    inputs, targets = parity_inputs(model_id, 2)
    forced = targets if mode == "forced" else None
    got = run_engine(
        **engine_request(model_id, method, inputs, generated_texts=forced, step_scores=STEP_SCORES)
    )
    assert len(got["sequences"]) == 2
    for i, text in enumerate(inputs):
        one = inseq_attribute(
            inseq_model,
            model_id,
            method,
            [text],
            None if forced is None else [forced[i]],
            step_scores=STEP_SCORES,
        )
        assert_sequence_matches(got["sequences"][i], expected_sequences(one)[0], step_scores=STEP_SCORES)
    if forced is not None:
        # Inseq batches encoder-decoder inputs (right padding) and runs forced decoder-only inputs one by one:
        # either way its batched output is sound, and in input order.
        batched = expected_sequences(inseq_attribute(inseq_model, model_id, method, inputs, forced))
        for i in range(2):
            assert_sequence_matches(got["sequences"][i], batched[i])
