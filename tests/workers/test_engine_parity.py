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

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from schemas.methods import METHOD_SPECS

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CAUSAL = ["tiny-gpt2", "tiny-llama"]
SEQ2SEQ = ["tiny-t5", "tiny-bart"]
MODELS = CAUSAL + SEQ2SEQ
METHODS = list(METHOD_SPECS)
GRADIENT_METHODS = [method for method, spec in METHOD_SPECS.items() if spec.family == "gradient"]
N_STEPS = 8
MAX_NEW_TOKENS = 5
STEP_SCORES = ["probability", "entropy"]
ATOL = 1e-4
"""Tolerance on normalised scores (each column sums to 1)."""
STEP_RTOL, STEP_ATOL = 1e-4, 1e-6
"""Tolerance on step scores (probabilities of random tiny models are around 1e-3)."""

PROMPTS = ["The cat sat on the", "Hello, how are you"]
"""Decoder-only prompts; each forced target below starts with its prompt."""
CAUSAL_TARGETS = ["The cat sat on the mat. A dog barked", "Hello, how are you today? I am fine,"]
SOURCES = ["The cat sat on the mat.", "Where is the nearest station?"]
SEQ2SEQ_TARGETS = ["A dog barked at the mailman.", "The train arrives at noon."]

INSEQ_GREEDY_VIA_GENERATE = {"tiny-llama"}
"""Decoder-only models whose tokenizer adds BOS: Inseq cannot attribute their greedy generation directly."""


def _is_causal(model_id: str) -> bool:
    return model_id in CAUSAL


def _inputs(model_id: str, n: int = 1) -> tuple[list[str], list[str]]:
    if _is_causal(model_id):
        return PROMPTS[:n], CAUSAL_TARGETS[:n]
    return SOURCES[:n], SEQ2SEQ_TARGETS[:n]


def _method_args(method: str) -> dict[str, Any]:
    return {"n_steps": N_STEPS} if method == "integrated_gradients" else {}


# ---------------------------------------------------------------------------------------------------------
# Oracle side


def inseq_attribute(
    inseq_model: Callable[[str, str], Any],
    model_id: str,
    method: str,
    inputs: list[str],
    generated_texts: list[str] | None = None,
    step_scores: list[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Run Inseq like the engine would be asked to, working around the oracle's BOS quirk (module doc)."""
    model = inseq_model(model_id, method)
    if generated_texts is None and model_id in INSEQ_GREEDY_VIA_GENERATE:
        # Encoded with special tokens (BOS) as `attribute` would, decoded without them.
        generated_texts = [
            model.generate(
                model.encode([text]), skip_special_tokens=True, max_new_tokens=MAX_NEW_TOKENS, do_sample=False
            )[0]
            for text in inputs
        ]
    if generated_texts is None:
        kwargs["generation_args"] = {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False}
    return model.attribute(
        inputs,
        generated_texts,
        show_progress=False,
        step_scores=list(step_scores or []),
        **_method_args(method),
        **kwargs,
    )


def expected_sequences(out: Any) -> list[dict[str, Any]]:
    """Inseq's output in the engine's terms: ids, positions and default-aggregated scores (NaN for null)."""
    sequences = []
    for seq in out.sequence_attributions:
        agg = seq.aggregate()
        sequences.append(
            {
                "source": [t.id for t in seq.source] if seq.source is not None else None,
                "target": [t.id for t in seq.target],
                "attr_pos_start": seq.attr_pos_start,
                "attr_pos_end": seq.attr_pos_end,
                "source_attributions": _np(agg.source_attributions),
                "target_attributions": _np(agg.target_attributions),
                "step_scores": {k: v.detach().float().numpy() for k, v in (seq.step_scores or {}).items()},
            }
        )
    return sequences


def inseq_step_scores(
    inseq_model: Callable[[str, str], Any], model_id: str, out: Any, **kwargs: Any
) -> list[dict[str, np.ndarray]]:
    """Step scores for the texts of `out` (attention is a final-step method in Inseq: it refuses step scores,
    so they come from its `dummy` method on the same, now forced, targets)."""
    again = inseq_model(model_id, "dummy").attribute(
        out.info["input_texts"],
        out.info["generated_texts"],
        show_progress=False,
        step_scores=STEP_SCORES,
        **kwargs,
    )
    return [{k: v.float().numpy() for k, v in s.step_scores.items()} for s in again.sequence_attributions]


def _np(t: Any) -> np.ndarray | None:
    return None if t is None else t.detach().float().numpy()


# ---------------------------------------------------------------------------------------------------------
# Engine side


def matrix(cells: list[list[Any]] | None) -> np.ndarray | None:
    """A result matrix (lists of rows, null cells) as a float array with NaN for null."""
    if cells is None:
        return None
    return np.array([[np.nan if c is None else c for c in row] for row in cells], dtype=float).reshape(
        len(cells), -1
    )


def engine_request(model_id: str, method: str, inputs: list[str], **fields: Any) -> dict[str, Any]:
    request = {
        "model": model_id,
        "method": method,
        "inputs": inputs,
        "generation_args": {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False},
        "method_args": _method_args(method),
    }
    request.update(fields)
    return request


# ---------------------------------------------------------------------------------------------------------
# Comparison


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    both = ~np.isnan(a) & ~np.isnan(b)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


def assert_scores_equal(
    name: str, got: np.ndarray | None, want: np.ndarray | None, *, extra_null_rows: bool = False
):
    """Same shape, null exactly where the oracle has NaN, values within ATOL.

    With `extra_null_rows`, `got` may have more rows than `want` if those rows are all null (decoder-only
    targets when Inseq truncates rows at `attr_pos_end`)."""
    if want is None:
        assert got is None, f"{name}: expected null, got shape {got.shape}"
        return
    assert got is not None, f"{name}: expected shape {want.shape}, got null"
    if extra_null_rows and got.shape[0] > want.shape[0]:
        tail = got[want.shape[0] :]
        assert np.isnan(tail).all(), f"{name}: rows from {want.shape[0]} on should be null:\n{tail}"
        got = got[: want.shape[0]]
    assert got.shape == want.shape, f"{name}: shape {got.shape} != oracle {want.shape}"
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert (nan_got == nan_want).all(), (
        f"{name}: null cells differ from the oracle's NaN cells\nengine null:\n{nan_got.astype(int)}\n"
        f"oracle NaN:\n{nan_want.astype(int)}"
    )
    diff = _max_diff(got, want)
    assert diff <= ATOL, f"{name}: max abs diff {diff:.3g} > {ATOL}\nengine:\n{got}\noracle:\n{want}"


def assert_step_scores_equal(
    got: dict[str, list[Any]], want: dict[str, np.ndarray], names: list[str]
) -> None:
    for name in names:
        assert name in got, f"step score {name!r} missing from the result"
        values = np.array([np.nan if v is None else v for v in got[name]], dtype=float)
        np.testing.assert_allclose(
            values, want[name], rtol=STEP_RTOL, atol=STEP_ATOL, err_msg=f"step score {name}"
        )


def assert_sequence_matches(
    got: dict[str, Any],
    want: dict[str, Any],
    *,
    step_scores: list[str] = (),
    extra_null_rows: bool = False,
    check_source: bool = True,
) -> None:
    assert [t["id"] for t in got["target"]] == want["target"], "target ids differ from the oracle's"
    if check_source and want["source"] is not None:
        assert [t["id"] for t in got["source"]] == want["source"], "source ids differ from the oracle's"
    assert (got["attr_pos_start"], got["attr_pos_end"]) == (want["attr_pos_start"], want["attr_pos_end"])
    assert_scores_equal(
        "source_attributions", matrix(got["source_attributions"]), want["source_attributions"]
    )
    assert_scores_equal(
        "target_attributions",
        matrix(got["target_attributions"]),
        want["target_attributions"],
        extra_null_rows=extra_null_rows,
    )
    assert_step_scores_equal(got["step_scores"], want["step_scores"], list(step_scores))


# ---------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("mode", ["forced", "greedy"])
def test_parity(run_engine, inseq_model, model_id: str, method: str, mode: str) -> None:
    inputs, targets = _inputs(model_id)
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
    inputs, targets = _inputs(model_id)
    out = inseq_attribute(inseq_model, model_id, "attention", inputs, targets)
    want = inseq_step_scores(inseq_model, model_id, out)
    got = run_engine(
        **engine_request(model_id, "attention", inputs, generated_texts=targets, step_scores=STEP_SCORES)
    )
    assert_step_scores_equal(got["sequences"][0]["step_scores"], want[0], STEP_SCORES)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_parity_attribute_target(run_engine, inseq_model, model_id: str, method: str) -> None:
    inputs, targets = _inputs(model_id)
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
    inputs, targets = _inputs(model_id)
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
    inputs, targets = _inputs(model_id)
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
    inputs, targets = _inputs(model_id)
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
    inputs, targets = _inputs(model_id, 2)
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
