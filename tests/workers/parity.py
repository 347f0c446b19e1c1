"""Helpers for the parity tests with the reference library (Inseq 0.7.1, the oracle): running it the way the
engine is asked to, and comparing its output with the engine's (see `test_engine_parity.py` for the
conventions and the oracle's quirks worked around)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from schemas.methods import METHOD_ARGS, METHOD_SPECS

CAUSAL = ["tiny-gpt2", "tiny-llama"]
SEQ2SEQ = ["tiny-t5", "tiny-bart"]
MODELS = CAUSAL + SEQ2SEQ
METHODS = ["saliency", "input_x_gradient", "integrated_gradients", "deeplift", "attention", "occlusion"]
"""Methods checked by the generic parity cases of `test_engine_parity.py` (others have their own files)."""
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


def parity_inputs(model_id: str, n: int = 1) -> tuple[list[str], list[str]]:
    if _is_causal(model_id):
        return PROMPTS[:n], CAUSAL_TARGETS[:n]
    return SOURCES[:n], SEQ2SEQ_TARGETS[:n]


def _method_args(method: str) -> dict[str, Any]:
    return {"n_steps": N_STEPS} if "n_steps" in METHOD_ARGS[method].model_fields else {}


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
