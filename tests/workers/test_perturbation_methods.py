"""Occlusion, LIME and ReAGent (`workers/methods/perturbation.py`).

- occlusion: parity with the reference library (Inseq 0.7.1, the oracle) on the four tiny models, and equality
  with a slow, direct per-(window, step) implementation where the oracle cannot go (a window longer than a
  target prefix); one batched forward for all windows and steps.
- LIME and ReAGent are randomised, and the oracle cannot run them here (LIME needs scikit-learn, ReAGent an
  NLTK tagger download): their properties are tested instead, with real models for determinism and shapes,
  and with known linear or decisive toy scorers for what the fit must recover.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from tests.workers.parity import (
    CAUSAL,
    MODELS,
    SEQ2SEQ,
    assert_sequence_matches,
    engine_request,
    expected_sequences,
    inseq_attribute,
    matrix,
    parity_inputs,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _sequence(got: dict[str, Any]) -> Any:
    """The engine's encoded sequence back from a result."""
    from workers.engine.sequences import EncodedSequence

    return EncodedSequence(
        [t["id"] for t in got["source"]],
        [t["id"] for t in got["target"]],
        got["attr_pos_start"],
        got["attr_pos_end"],
    )


def _scores(got: dict[str, Any], name: str) -> np.ndarray:
    """A result's score matrix, which must be there (NaN for null cells)."""
    scores = matrix(got[name])
    assert scores is not None, f"{name} is null"
    return scores


def _column_sums(got: dict[str, Any]) -> np.ndarray:
    names = [k for k in ("source_attributions", "target_attributions") if got[k] is not None]
    return np.sum([np.nansum(np.abs(_scores(got, k)), axis=0) for k in names], axis=0)


# ---------------------------------------------------------------------------------------------------------
# Occlusion: parity with the oracle


@pytest.mark.parametrize(("model_id", "window", "stride"), [("tiny-gpt2", 2, 1), ("tiny-llama", 3, 2)])
def test_occlusion_parity_sliding_window(
    run_engine, inseq_model, engine_model, model_id: str, window: int, stride: int
) -> None:
    """The oracle's `sliding_window_shapes=(window, hidden)`, `strides=stride` (captum's averaging of
    overlapping windows, and the last window cut at the end of each prefix)."""
    inputs, targets = parity_inputs(model_id)
    hidden = engine_model(model_id).model.get_input_embeddings().embedding_dim
    out = inseq_attribute(
        inseq_model,
        model_id,
        "occlusion",
        inputs,
        targets,
        sliding_window_shapes=(window, hidden),
        strides=stride,
    )
    got = run_engine(
        **engine_request(
            model_id,
            "occlusion",
            inputs,
            generated_texts=targets,
            method_args={"sliding_window": window, "stride": stride},
        )
    )
    assert_sequence_matches(got["sequences"][0], expected_sequences(out)[0])


@pytest.mark.parametrize("model_id", CAUSAL)
def test_occlusion_parity_attr_pos_decoder_only(run_engine, inseq_model, engine_model, model_id: str) -> None:
    inputs, targets = parity_inputs(model_id)
    prompt = engine_model(model_id).tokenizer(inputs[0]).input_ids
    start, end = len(prompt) + 1, len(prompt) + 3
    out = inseq_attribute(
        inseq_model, model_id, "occlusion", inputs, targets, attr_pos_start=start, attr_pos_end=end
    )
    want = expected_sequences(out)[0]
    got = run_engine(
        **engine_request(
            model_id, "occlusion", inputs, generated_texts=targets, attr_pos_start=start, attr_pos_end=end
        )
    )["sequences"][0]
    # As in test_engine_parity: Inseq's source here is target[:attr_pos_start], the engine's the prompt.
    assert_sequence_matches(got, want, extra_null_rows=True, check_source=False)


@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_occlusion_parity_attr_pos_encoder_decoder(run_engine, inseq_model, model_id: str) -> None:
    """Engine positions [2, 4) == columns 1..2 of a full oracle run (see test_engine_parity)."""
    inputs, targets = parity_inputs(model_id)
    full = expected_sequences(
        inseq_attribute(inseq_model, model_id, "occlusion", inputs, targets, attribute_target=True)
    )[0]
    cols = slice(1, 3)
    want = {
        **full,
        "attr_pos_start": 2,
        "attr_pos_end": 4,
        "source_attributions": full["source_attributions"][:, cols],
        "target_attributions": full["target_attributions"][:, cols],
    }
    got = run_engine(
        **engine_request(
            model_id,
            "occlusion",
            inputs,
            generated_texts=targets,
            attr_pos_start=2,
            attr_pos_end=4,
            attribute_target=True,
        )
    )["sequences"][0]
    assert_sequence_matches(got, want)


# ---------------------------------------------------------------------------------------------------------
# Occlusion: a direct implementation, one forward per (window, step)


def _slow_occlusion(loaded: Any, seq: Any, window: int, stride: int, attribute_target: bool) -> list[Any]:
    """Occlusion by its definition: for each step, the model on that step's prefix, each captum window of it
    replaced by the baseline, |mean output drop over the windows covering each token|; the output is the
    target's probability."""
    from workers.engine.model_io import SequenceIO

    io = SequenceIO(loaded, seq)
    embeds, bases = io.input_embeds(), io.baseline_embeds()
    enc_dec = io.is_encoder_decoder
    n_target = len(seq.target_ids)
    source = np.full((len(seq.source_ids), len(seq.positions)), np.nan) if enc_dec else None
    target = np.full((n_target, len(seq.positions)), np.nan) if (attribute_target or not enc_dec) else None

    def prob(inputs: list[torch.Tensor], t: int) -> float:
        with torch.no_grad():
            if enc_dec:
                logits = loaded.model(inputs_embeds=inputs[0], decoder_inputs_embeds=inputs[1]).logits
            else:
                logits = loaded.model(inputs_embeds=inputs[0]).logits
        return float(torch.softmax(logits[0, -1], dim=-1)[seq.target_ids[t]])

    for j, t in enumerate(seq.positions):
        inputs = [e[:, :t] if k == len(embeds) - 1 else e for k, e in enumerate(embeds)]
        original = prob(inputs, t)
        sides = [(0, source), (1, target)] if enc_dec else [(0, target)]
        for k, out in sides:
            if out is None:
                continue
            n = inputs[k].shape[1]
            total, count = np.zeros(n), np.zeros(n)
            for w in range(math.ceil(max(n - window, 0) / stride) + 1):
                a = w * stride
                occluded = list(inputs)
                occluded[k] = inputs[k].clone()
                occluded[k][:, a : a + window] = bases[k][:, :n][:, a : a + window]
                total[a : a + window] += original - prob(occluded, t)
                count[a : a + window] += 1
            out[:n, j] = np.abs(total / count)
    return [source, target]


@pytest.mark.parametrize(("model_id", "attribute_target"), [("tiny-gpt2", False), ("tiny-t5", True)])
def test_occlusion_equals_direct_implementation(
    run_engine, engine_model, model_id: str, attribute_target: bool
) -> None:
    """sliding_window 2, stride 1; on tiny-t5 with target attribution, where the first step's prefix is
    shorter than the window (the oracle asserts there; the window is cut, as at the end of any prefix)."""
    inputs, targets = parity_inputs(model_id)
    got = run_engine(
        **engine_request(
            model_id,
            "occlusion",
            inputs,
            generated_texts=targets,
            attribute_target=attribute_target,
            method_args={"sliding_window": 2, "stride": 1},
        )
    )["sequences"][0]
    loaded = engine_model(model_id)
    source, target = _slow_occlusion(loaded, _sequence(got), 2, 1, attribute_target)
    for name, want in (("source_attributions", source), ("target_attributions", target)):
        if want is None:
            assert got[name] is None
            continue
        have = _scores(got, name)
        assert (np.isnan(have) == np.isnan(want)).all(), name
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-8, err_msg=name)


def test_occlusion_one_batched_forward(engine_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """All windows and all steps from one forward; with a tiny budget, the same scores from several."""
    from workers.engine import perturb
    from workers.engine.model_io import SequenceIO
    from workers.engine.sequences import EncodedSequence
    from workers.methods.registry import build_method

    loaded = engine_model("tiny-gpt2")
    ids = loaded.tokenizer("The cat sat on the mat. A dog barked at the mailman").input_ids
    io = SequenceIO(loaded, EncodedSequence(ids[:5], ids, 5, len(ids)))
    positions = list(range(5, len(ids)))

    targets = io.step_targets(positions)

    def fn(logits: torch.Tensor, _forwards: Any) -> torch.Tensor:  # the target's probability
        return torch.softmax(logits, dim=-1)[:, torch.arange(len(positions)), targets]

    calls = []
    handle = loaded.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        method = build_method("occlusion", {})
        batched = method.attribute(io, positions, fn, False).target
        assert len(calls) == 1  # len(ids) - 1 windows + the original, every step
        monkeypatch.setattr(perturb, "MAX_COPIES_PER_FORWARD", 4)
        calls.clear()
        chunked = method.attribute(io, positions, fn, False).target
        assert len(calls) == math.ceil(len(ids) / 4)
    finally:
        handle.remove()
    torch.testing.assert_close(chunked, batched, equal_nan=True, rtol=1e-5, atol=1e-8)


def test_occlusion_refuses_gaps(run_engine) -> None:
    from pydantic import ValidationError

    inputs, targets = parity_inputs("tiny-gpt2")
    with pytest.raises(ValidationError, match="stride"):
        run_engine(
            **engine_request(
                "tiny-gpt2",
                "occlusion",
                inputs,
                generated_texts=targets,
                method_args={"sliding_window": 1, "stride": 2},
            )
        )


# ---------------------------------------------------------------------------------------------------------
# LIME


def _ridge_with_intercept(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Ridge by its definition: minimise sum_s w_s (y_s - b - x_s . beta)^2 + alpha |beta|^2 over (beta, b),
    the intercept not penalised, from the normal equations of the augmented design [x, 1]."""
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    penalty = torch.eye(design.shape[1], dtype=x.dtype) * alpha
    penalty[-1, -1] = 0.0
    solution = torch.linalg.solve(design.T @ (w[:, None] * design) + penalty, design.T @ (w * y))
    return solution[:-1]


@pytest.mark.parametrize("n_samples", [7, 40])
def test_lime_ridge_on_tokens_equals_ridge_on_embeddings(n_samples: int) -> None:
    """The reference regresses on every embedding value (length x hidden features); the engine on one feature
    per token, expanded back along x - baseline: the same coefficients (kernel and primal forms)."""
    from workers.engine.perturb import weighted_ridge

    gen = torch.Generator().manual_seed(0)
    length, hidden = 6, 5
    x = torch.randn(length, hidden, generator=gen, dtype=torch.float64)
    base = torch.randn(length, hidden, generator=gen, dtype=torch.float64)
    keep = torch.rand(n_samples, length, generator=gen) > 0.3
    copies = torch.where(keep[..., None], x, base)  # [n, length, hidden]
    y = torch.randn(n_samples, generator=gen, dtype=torch.float64)
    w = torch.rand(n_samples, generator=gen, dtype=torch.float64) * 10
    want = _ridge_with_intercept(copies.reshape(n_samples, -1), y, w, 1.0).view(length, hidden)
    delta = x - base
    norm = delta.norm(dim=-1)
    coef = weighted_ridge((keep.double() * norm)[None], y[None], w[None])[0]
    torch.testing.assert_close(coef[:, None] * delta / norm[:, None], want, rtol=1e-8, atol=1e-10)
    full = weighted_ridge(copies.reshape(1, n_samples, -1), y[None], w[None])[0]
    torch.testing.assert_close(full.view(length, hidden), want, rtol=1e-8, atol=1e-10)


def _lime_io(engine_model: Any, model_id: str) -> tuple[Any, list[int]]:
    from workers.engine.model_io import SequenceIO
    from workers.engine.sequences import EncodedSequence

    loaded = engine_model(model_id)
    tok = loaded.tokenizer
    if loaded.is_encoder_decoder:
        source = tok("The cat sat on the mat.").input_ids
        target = [loaded.model.config.decoder_start_token_id, *tok(text_target="A dog barked.").input_ids]
        return SequenceIO(loaded, EncodedSequence(source, target, 1, len(target))), list(
            range(1, len(target))
        )
    ids = tok("The cat sat on the mat. A dog barked").input_ids
    return SequenceIO(loaded, EncodedSequence(ids[:5], ids, 5, len(ids))), list(range(5, len(ids)))


@pytest.mark.parametrize(("model_id", "attribute_target"), [("tiny-gpt2", False), ("tiny-bart", True)])
def test_lime_recovers_a_linear_scorer(engine_model, model_id: str, attribute_target: bool) -> None:
    """A scorer that is a known linear function of which tokens each copy kept: LIME's coefficients, read
    along each token's x - baseline, are its weights (ridge shrinkage aside), for every step's own prefix."""
    from workers.methods.registry import build_method

    io, positions = _lime_io(engine_model, model_id)
    inputs = io.input_embeds()
    weights = [torch.linspace(-1.0, 1.0, x.shape[1]).roll(3) for x in inputs]
    attributed = [True, attribute_target] if io.is_encoder_decoder else [True]
    last = len(inputs) - 1

    def linear(_logits: torch.Tensor, forwards: Any) -> torch.Tensor:
        out = torch.zeros(len(forwards.embeds[0]), len(positions))
        for k, (copy, x) in enumerate(zip(forwards.embeds, inputs, strict=True)):
            kept = (copy == x[:, : copy.shape[1]]).all(dim=-1).float()  # [copies, length]
            for j, t in enumerate(positions):
                n = t if k == last else copy.shape[1]
                out[:, j] += kept[:, :n] @ weights[k][:n]
        return out

    raw = build_method("lime", {"n_samples": 300, "seed": 1}).attribute(
        io, positions, linear, attribute_target
    )
    sides = [raw.source, raw.target] if io.is_encoder_decoder else [raw.target]
    bases = io.baseline_embeds()
    for k, scores in enumerate(sides):
        if not attributed[k]:
            assert scores is None
            continue
        assert scores is not None
        delta = (inputs[k] - bases[k])[0]
        moved = delta.norm(dim=-1) > 0  # a token equal to its baseline (EOS, decoder start) is never replaced
        for j, t in enumerate(positions):
            n = t if k == last else inputs[k].shape[1]
            got = (scores[:n, j] * delta[:n]).sum(dim=-1)
            want = torch.where(moved[:n], weights[k][:n], 0.0)
            torch.testing.assert_close(got, want, rtol=0, atol=0.02)
            if k == last:
                assert scores[t:, j].isnan().all()


@pytest.mark.parametrize("model_id", MODELS)
def test_lime_seeded_and_well_formed(run_engine, model_id: str) -> None:
    inputs, targets = parity_inputs(model_id)
    kwargs = {"generated_texts": targets, "attribute_target": model_id in SEQ2SEQ}

    def run(seed: int) -> dict[str, Any]:
        args = {"n_samples": 20, "seed": seed}
        return run_engine(**engine_request(model_id, "lime", inputs, method_args=args, **kwargs))[
            "sequences"
        ][0]

    first, again, other = run(3), run(3), run(4)
    for name in ("source_attributions", "target_attributions"):
        assert first[name] == again[name], f"{name}: same seed, different scores"
    assert first["target_attributions"] != other["target_attributions"]
    np.testing.assert_allclose(_column_sums(first), 1.0, rtol=1e-5)
    target = _scores(first, "target_attributions")
    start = first["attr_pos_start"]
    for j in range(target.shape[1]):
        assert not np.isnan(target[: start + j, j]).any() and np.isnan(target[start + j :, j]).all()


# ---------------------------------------------------------------------------------------------------------
# ReAGent


def test_reagent_finds_the_decisive_token() -> None:
    """A toy predictor where token 2 decides the target (kept: logit +4, replaced: -4) and token 4 nudges it:
    every step's probes end with token 2 on top, and only stop once it is kept."""
    from schemas.methods import ReagentArgs
    from workers.engine.reagent import ProbeTask, reagent_probe

    n_features, vocab, target = 6, 20, 3
    ids = torch.arange(n_features) + 5
    reads = torch.ones((2, n_features), dtype=torch.bool)
    reads[1, 5] = False  # the second step reads a shorter prefix
    proposal = torch.ones((n_features, vocab))
    proposal[torch.arange(n_features), ids] = 0.0
    proposal /= proposal.sum(dim=-1, keepdim=True)

    def predict(rows: torch.Tensor, _steps: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((len(rows), vocab))
        logits[:, target] = torch.where(rows[:, 2] == ids[2], 4.0, -4.0) + (rows[:, 4] == ids[4]).float()
        return logits

    p_original = torch.softmax(predict(ids[None], torch.zeros(1)), dim=-1)[0, target].repeat(2)
    task = ProbeTask(ids, reads, torch.tensor([target, target]), p_original, proposal)
    args = ReagentArgs(keep_top_n=1, num_probes=8, max_probe_steps=300, seed=0)
    scores = reagent_probe(task, predict, args, torch.Generator().manual_seed(0))
    assert scores.shape == (2, n_features)
    torch.testing.assert_close(scores.sum(dim=-1), torch.ones(2))
    assert scores[1, 5] == 0.0
    assert (scores.argmax(dim=-1) == 2).all()
    assert (scores[:, 2] > 0.3).all()


@pytest.mark.parametrize("model_id", MODELS)
def test_reagent_seeded_and_well_formed(run_engine, model_id: str) -> None:
    inputs, targets = parity_inputs(model_id)
    kwargs = {"generated_texts": targets, "attribute_target": model_id in SEQ2SEQ}

    def run(seed: int) -> dict[str, Any]:
        args = {"num_probes": 4, "max_probe_steps": 15, "keep_top_n": 2, "seed": seed}
        return run_engine(**engine_request(model_id, "reagent", inputs, method_args=args, **kwargs))[
            "sequences"
        ][0]

    first, again, other = run(3), run(3), run(4)
    for name in ("source_attributions", "target_attributions"):
        assert first[name] == again[name], f"{name}: same seed, different scores"
    assert first["target_attributions"] != other["target_attributions"]
    np.testing.assert_allclose(_column_sums(first), 1.0, rtol=1e-5)  # a mean of softmaxes
    target = _scores(first, "target_attributions")
    start = first["attr_pos_start"]
    for j in range(target.shape[1]):
        assert (target[: start + j, j] > 0).all() and np.isnan(target[start + j :, j]).all()


def test_reagent_source_only_encoder_decoder(run_engine) -> None:
    inputs, targets = parity_inputs("tiny-t5")
    args = {"num_probes": 2, "max_probe_steps": 5, "seed": 0}
    got = run_engine(
        **engine_request("tiny-t5", "reagent", inputs, generated_texts=targets, method_args=args)
    )
    seq = got["sequences"][0]
    assert seq["target_attributions"] is None
    np.testing.assert_allclose(_column_sums(seq), 1.0, rtol=1e-5)


def test_reagent_replacing_model_refused(run_engine) -> None:
    from schemas.errors import InvalidRequestError

    inputs, targets = parity_inputs("tiny-gpt2")
    with pytest.raises(InvalidRequestError, match="replacing_model"):
        run_engine(
            **engine_request(
                "tiny-gpt2",
                "reagent",
                inputs,
                generated_texts=targets,
                method_args={"replacing_model": "tiny-llama"},
            )
        )


# ---------------------------------------------------------------------------------------------------------
# LIME and ReAGent: generated targets and a span of steps


@pytest.mark.parametrize("method", ["lime", "reagent"])
@pytest.mark.parametrize("model_id", ["tiny-llama", "tiny-bart"])
def test_randomised_methods_greedy_span(run_engine, engine_model, method: str, model_id: str) -> None:
    """Generated targets, steps [2, 4) of the continuation, no seed (fresh draws): well-formed columns."""
    inputs, _ = parity_inputs(model_id)
    start = 1 if model_id in SEQ2SEQ else len(engine_model(model_id).tokenizer(inputs[0]).input_ids)
    args = {"n_samples": 8} if method == "lime" else {"num_probes": 2, "max_probe_steps": 5}
    got = run_engine(
        **engine_request(
            model_id,
            method,
            inputs,
            method_args=args,
            attribute_target=model_id in SEQ2SEQ,
            attr_pos_start=start + 1,
            attr_pos_end=start + 3,
        )
    )["sequences"][0]
    assert (got["attr_pos_start"], got["attr_pos_end"]) == (start + 1, start + 3)
    target = _scores(got, "target_attributions")
    assert target.shape == (len(got["target"]), 2)
    np.testing.assert_allclose(_column_sums(got), 1.0, rtol=1e-5)
    for j in range(2):
        assert np.isnan(target[start + 1 + j :, j]).all() and not np.isnan(target[: start + 1 + j, j]).any()
