"""Engine properties that need no oracle: result shape, normalisation, null cells, forced targets, positions,
progress reporting and request errors, on the tiny test models."""

from __future__ import annotations

import math
from typing import Any

import pytest

from schemas.errors import InvalidRequestError
from schemas.methods import METHOD_SPECS
from tests.method_args import fast_method_args
from tests.result_shape import assert_valid_result

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CAUSAL = ["tiny-gpt2", "tiny-llama"]
SEQ2SEQ = ["tiny-t5", "tiny-bart"]
MODELS = CAUSAL + SEQ2SEQ
METHODS = [method for method in METHOD_SPECS if method != "dummy"]
"""Methods that attribute (`dummy` only computes step scores: see its own test)."""
UNNORMALISED = {"occlusion"}
"""One score per token and no aggregation: the reference leaves its columns as they are."""
MAX_NEW_TOKENS = 4
HIDDEN_SIZE = 32
"""d_model of every tiny model (tests/tiny_models.py)."""

PROMPT = "The cat sat on the"
CAUSAL_TARGET = "The cat sat on the mat. A dog barked"
SOURCE = "The cat sat on the mat."
SEQ2SEQ_TARGET = "A dog barked at the mailman."


def _is_causal(model_id: str) -> bool:
    return model_id in CAUSAL


def _request(model_id: str, method: str = "saliency", forced: bool = True, **fields: Any) -> dict[str, Any]:
    causal = _is_causal(model_id)
    request: dict[str, Any] = {
        "model": model_id,
        "method": method,
        "inputs": [PROMPT if causal else SOURCE],
        "generated_texts": [CAUSAL_TARGET if causal else SEQ2SEQ_TARGET] if forced else None,
        "generation_args": {"max_new_tokens": MAX_NEW_TOKENS},
        "method_args": fast_method_args(method),
    }
    request.update(fields)
    return request


def _ids(tokens: list[dict[str, Any]]) -> list[int]:
    return [t["id"] for t in tokens]


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "_progress"}


def _without_timing(result: dict[str, Any]) -> dict[str, Any]:
    out = _strip(result)
    out["info"] = {k: v for k, v in out["info"].items() if k != "exec_time_s"}
    return out


def _column_sums(seq: dict[str, Any]) -> list[float]:
    n = len(seq["step_scores"].get("probability", [])) or seq["attr_pos_end"] - seq["attr_pos_start"]
    sums = [0.0] * n
    for matrix in (seq["source_attributions"], seq["target_attributions"]):
        for row in matrix or []:
            for j, cell in enumerate(row):
                if cell is not None:
                    sums[j] += abs(cell)
    return sums


def _assert_null_pattern(seq: dict[str, Any]) -> None:
    """Source cells are all numbers; target cell (row i, step p) is a number iff i < p."""
    start, end = seq["attr_pos_start"], seq["attr_pos_end"]
    for i, row in enumerate(seq["source_attributions"] or []):
        assert len(row) == end - start
        assert all(isinstance(c, float) for c in row), f"source row {i} has nulls: {row}"
    for i, row in enumerate(seq["target_attributions"] or []):
        assert len(row) == end - start
        for j, cell in enumerate(row):
            step = start + j
            if i < step:
                assert isinstance(cell, float) and math.isfinite(cell), (
                    f"cell ({i}, step {step}) should be set"
                )
            else:
                assert cell is None, f"cell ({i}, step {step}) should be null, got {cell}"


# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_id", MODELS)
def test_result_shape_normalisation_and_nulls(run_engine, model_id: str, method: str) -> None:
    result = run_engine(**_request(model_id, method, step_scores=["probability", "entropy"]))
    assert_valid_result(_strip(result))
    assert result["model"]["id"] == model_id
    assert result["model"]["is_encoder_decoder"] is (not _is_causal(model_id))
    assert result["method"] == method
    (seq,) = result["sequences"]
    n_source, n_target = len(seq["source"]), len(seq["target"])
    n = seq["attr_pos_end"] - seq["attr_pos_start"]
    assert n >= 1
    if _is_causal(model_id):
        assert seq["source_attributions"] is None
        assert len(seq["target_attributions"]) == n_target
        assert seq["attr_pos_start"] == n_source and seq["attr_pos_end"] == n_target
    else:
        assert len(seq["source_attributions"]) == n_source
        assert seq["target_attributions"] is None
        assert seq["attr_pos_start"] == 1 and seq["attr_pos_end"] == n_target
    for name in ("probability", "entropy"):
        assert len(seq["step_scores"][name]) == n
    assert all(0.0 < p <= 1.0 for p in seq["step_scores"]["probability"])
    assert all(h >= 0.0 for h in seq["step_scores"]["entropy"])
    _assert_null_pattern(seq)
    if method not in UNNORMALISED:
        assert _column_sums(seq) == pytest.approx([1.0] * n, abs=1e-5)
    if method != "input_x_gradient":  # L2 norms and attention weights are never negative
        cells = [
            c for m in (seq["source_attributions"], seq["target_attributions"]) for r in m or [] for c in r
        ]
        assert all(c >= 0 for c in cells if c is not None)


@pytest.mark.parametrize("model_id", MODELS)
def test_dummy_gives_step_scores_and_no_attributions(run_engine, model_id: str) -> None:
    plain = run_engine(**_request(model_id, step_scores=["probability", "entropy"]))["sequences"][0]
    (seq,) = run_engine(**_request(model_id, "dummy", step_scores=["probability", "entropy"]))["sequences"]
    assert seq["source_attributions"] is None and seq["target_attributions"] is None
    assert seq["step_scores"] == plain["step_scores"]
    assert (seq["attr_pos_start"], seq["attr_pos_end"]) == (plain["attr_pos_start"], plain["attr_pos_end"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_attribute_target_encoder_decoder(run_engine, model_id: str, method: str) -> None:
    (seq,) = run_engine(**_request(model_id, method, attribute_target=True))["sequences"]
    n = seq["attr_pos_end"] - seq["attr_pos_start"]
    assert len(seq["source_attributions"]) == len(seq["source"])
    assert len(seq["target_attributions"]) == len(seq["target"])
    _assert_null_pattern(seq)
    if method in UNNORMALISED:
        return
    # Normalised over source and target together: the source alone sums to less than 1 from step 2 on.
    assert _column_sums(seq) == pytest.approx([1.0] * n, abs=1e-5)
    source_only = [sum(row[j] for row in seq["source_attributions"]) for j in range(n)]
    assert all(s < 1.0 - 1e-6 for s in source_only[1:])


@pytest.mark.parametrize("model_id", CAUSAL)
def test_attribute_target_is_ignored_for_decoder_only(run_engine, model_id: str) -> None:
    plain = run_engine(**_request(model_id))
    flagged = run_engine(**_request(model_id, attribute_target=True))
    assert flagged["sequences"] == plain["sequences"]


@pytest.mark.parametrize("model_id", MODELS)
def test_forced_targets_are_respected(run_engine, engine_model, model_id: str) -> None:
    tok = engine_model(model_id).tokenizer
    (seq,) = run_engine(**_request(model_id))["sequences"]
    if _is_causal(model_id):
        assert _ids(seq["source"]) == tok(PROMPT).input_ids
        assert _ids(seq["target"]) == tok(CAUSAL_TARGET).input_ids
        assert seq["attr_pos_start"] == len(tok(PROMPT).input_ids)
    else:
        start = engine_model(model_id).model.config.decoder_start_token_id
        assert _ids(seq["source"]) == tok(SOURCE).input_ids
        assert _ids(seq["target"]) == [start, *tok(text_target=SEQ2SEQ_TARGET).input_ids]
        assert seq["attr_pos_start"] == 1
    assert seq["attr_pos_end"] == len(seq["target"])
    assert [t["token"] for t in seq["target"]] == tok.convert_ids_to_tokens(_ids(seq["target"]))


@pytest.mark.parametrize("model_id", MODELS)
def test_greedy_generation(run_engine, engine_model, model_id: str) -> None:
    tok = engine_model(model_id).tokenizer
    (seq,) = run_engine(**_request(model_id, forced=False, step_scores=["probability"]))["sequences"]
    if _is_causal(model_id):
        prompt = tok(PROMPT).input_ids
        assert _ids(seq["source"]) == prompt
        assert _ids(seq["target"])[: len(prompt)] == prompt
        assert 1 <= len(seq["target"]) - len(prompt) <= MAX_NEW_TOKENS
    else:
        assert seq["target"][0]["id"] == engine_model(model_id).model.config.decoder_start_token_id
        # The generated text is tokenised again as a target, which may add special tokens (EOS, BOS).
        assert 2 <= len(seq["target"]) <= MAX_NEW_TOKENS + 3
    assert len(seq["step_scores"]["probability"]) == seq["attr_pos_end"] - seq["attr_pos_start"]


@pytest.mark.parametrize("model_id", MODELS)
def test_deterministic(run_engine, model_id: str) -> None:
    request = _request(model_id, "integrated_gradients", forced=False, step_scores=["probability"])
    assert _without_timing(run_engine(**request)) == _without_timing(run_engine(**request))


@pytest.mark.parametrize("forced", [True, False])
@pytest.mark.parametrize("model_id", MODELS)
def test_several_inputs_equal_one_by_one(run_engine, model_id: str, forced: bool) -> None:
    if _is_causal(model_id):
        inputs = [PROMPT, "Hello, how are you"]
        targets = [CAUSAL_TARGET, "Hello, how are you today? I am fine,"]
    else:
        inputs = [SOURCE, "Where is the nearest station?"]
        targets = [SEQ2SEQ_TARGET, "The train arrives at noon."]
    fields = {"step_scores": ["probability"], "attribute_target": not _is_causal(model_id)}
    both = run_engine(
        **_request(model_id, inputs=inputs, generated_texts=targets if forced else None, **fields)
    )
    assert len(both["sequences"]) == 2
    for i in range(2):
        one = run_engine(
            **_request(
                model_id, inputs=[inputs[i]], generated_texts=[targets[i]] if forced else None, **fields
            )
        )
        got, want = both["sequences"][i], one["sequences"][0]
        assert _ids(got["source"]) == _ids(want["source"]) and _ids(got["target"]) == _ids(want["target"])
        for key in ("source_attributions", "target_attributions"):
            if want[key] is None:
                assert got[key] is None
                continue
            flat_got = [c for row in got[key] for c in row]
            flat_want = [c for row in want[key] for c in row]
            assert [c is None for c in flat_got] == [c is None for c in flat_want]
            assert [c for c in flat_got if c is not None] == pytest.approx(
                [c for c in flat_want if c is not None], abs=1e-6
            )
        assert got["step_scores"]["probability"] == pytest.approx(
            want["step_scores"]["probability"], rel=1e-5
        )


@pytest.mark.parametrize("model_id", MODELS)
def test_progress_reaches_total(run_engine, model_id: str) -> None:
    inputs = [PROMPT, "Hello, how are you"] if _is_causal(model_id) else [SOURCE, "Hello world"]
    result = run_engine(**_request(model_id, forced=False, inputs=inputs))
    progress = result["_progress"]
    total = sum(s["attr_pos_end"] - s["attr_pos_start"] for s in result["sequences"])
    assert progress, "on_progress was never called"
    assert progress[-1] == (total, total)
    assert all(t == total for _, t in progress)
    dones = [d for d, _ in progress]
    assert dones == sorted(dones) and 0 <= dones[0]


@pytest.mark.parametrize("model_id", MODELS)
def test_attr_pos_range(run_engine, model_id: str) -> None:
    full = run_engine(**_request(model_id, step_scores=["probability"]))["sequences"][0]
    start = full["attr_pos_start"] + 1
    end = start + 2
    (seq,) = run_engine(
        **_request(model_id, step_scores=["probability"], attr_pos_start=start, attr_pos_end=end)
    )["sequences"]
    assert (seq["attr_pos_start"], seq["attr_pos_end"]) == (start, end)
    assert _ids(seq["target"]) == _ids(full["target"])
    assert len(seq["step_scores"]["probability"]) == 2
    # Columns are per step: the same as the matching columns of the full run.
    offset = start - full["attr_pos_start"]
    assert seq["step_scores"]["probability"] == pytest.approx(
        full["step_scores"]["probability"][offset : offset + 2], rel=1e-5
    )
    key = "target_attributions" if _is_causal(model_id) else "source_attributions"
    for row_got, row_full in zip(seq[key], full[key], strict=True):
        assert row_got == pytest.approx(row_full[offset : offset + 2], abs=1e-6)
    _assert_null_pattern(seq)


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_attr_pos_end_past_the_target_is_clipped(run_engine, model_id: str) -> None:
    (seq,) = run_engine(**_request(model_id, attr_pos_end=500))["sequences"]
    assert seq["attr_pos_end"] == len(seq["target"])


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_attr_pos_start_past_the_target_is_refused(run_engine, model_id: str) -> None:
    with pytest.raises(InvalidRequestError):
        run_engine(**_request(model_id, attr_pos_start=100))


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-bart"])
def test_unnormalised_scores(run_engine, model_id: str) -> None:
    """normalize=False returns the raw L2 norms; normalising them by column gives the default output."""
    raw = run_engine(**_request(model_id, aggregation={"normalize": False}))["sequences"][0]
    norm = run_engine(**_request(model_id))["sequences"][0]
    sums = _column_sums(raw)
    assert any(abs(s - 1.0) > 1e-3 for s in sums)
    key = "target_attributions" if _is_causal(model_id) else "source_attributions"
    for row_raw, row_norm in zip(raw[key], norm[key], strict=True):
        expected = [None if c is None else c / sums[j] for j, c in enumerate(row_raw)]
        assert [c is None for c in row_norm] == [c is None for c in expected]
        assert [c for c in row_norm if c is not None] == pytest.approx(
            [c for c in expected if c is not None], rel=1e-4, abs=1e-7
        )


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_granular_scores(run_engine, model_id: str) -> None:
    (seq,) = run_engine(**_request(model_id, aggregation={"granular": True, "normalize": False}))["sequences"]
    key = "target_attributions" if _is_causal(model_id) else "source_attributions"
    start = seq["attr_pos_start"]
    for i, row in enumerate(seq[key]):
        for j, cell in enumerate(row):
            if key == "target_attributions" and i >= start + j:
                assert cell is None or all(c is None for c in cell)
            else:
                assert isinstance(cell, list) and len(cell) == HIDDEN_SIZE


# ---------------------------------------------------------------------------------------------------------
# Request errors


@pytest.mark.parametrize("model_id", MODELS)
def test_too_long_input_is_refused(run_engine, model_id: str) -> None:
    long_text = " ".join(["the"] * 2100)  # 2100 tokens > MAX_SEQUENCE_TOKENS (2048)
    with pytest.raises(InvalidRequestError) as err:
        run_engine(**_request(model_id, forced=False, inputs=[long_text]))
    assert err.value.status == 422


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_model_token_limit_is_enforced(tiny_entries, tmp_path, model_id: str) -> None:
    from schemas.attribution import AttributionRequest
    from workers.engine.run import run_attribution
    from workers.model_loading import load_model

    entry = tiny_entries[model_id].model_copy(update={"max_sequence_tokens": 6})
    loaded = load_model(entry, tmp_path)
    request = AttributionRequest(**_request(model_id))
    with pytest.raises(InvalidRequestError):
        run_attribution(request, loaded, lambda *_: None, result_id="test")


@pytest.mark.parametrize("model_id", CAUSAL)
def test_decoder_only_forced_text_must_start_with_the_prompt(run_engine, model_id: str) -> None:
    with pytest.raises(InvalidRequestError):
        run_engine(**_request(model_id, generated_texts=["A dog barked at the mailman."]))


def test_a_job_over_the_cost_limit_is_refused_before_it_runs(engine_model) -> None:
    from schemas.attribution import AttributionRequest
    from schemas.errors import CostLimitError
    from workers.engine.run import run_attribution

    request = AttributionRequest(
        **_request("tiny-gpt2", method="integrated_gradients", method_args={"n_steps": 10})
    )
    calls: list[tuple[int, int]] = []
    with pytest.raises(CostLimitError) as err:
        run_attribution(
            request, engine_model("tiny-gpt2"), lambda *a: calls.append(a), result_id="x", max_cost=50
        )
    assert err.value.status == 422 and err.value.extensions["limit"] == 50
    assert err.value.extensions["cost"] > 50 and calls == []  # nothing was computed


def test_non_finite_scores_fail_the_job(tiny_entries, tmp_path) -> None:
    import torch

    from schemas.attribution import AttributionRequest
    from schemas.errors import NonFiniteScoresError
    from workers.engine.run import run_attribution
    from workers.model_loading import load_model

    loaded = load_model(tiny_entries["tiny-llama"], tmp_path)  # a private copy: its weights are spoiled below
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight[:, 0] = float("inf")
    request = AttributionRequest(**_request("tiny-llama", step_scores=["probability"]))
    with pytest.raises(NonFiniteScoresError, match="NaN or infinite"):
        run_attribution(request, loaded, lambda *_: None, result_id="x")
