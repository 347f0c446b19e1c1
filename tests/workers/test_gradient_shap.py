"""GradientSHAP: seeded determinism, agreement with a direct per-step computation from the same random draws,
and its promise: with no noise, its average over many samples approaches integrated gradients.

The reference library's runs draw from numpy's and torch's global generators per step, so its numbers cannot
be reproduced; the direct computation below is the method's definition, one plain forward and backward per
(step, sample), with no engine code but the draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from schemas.methods import GradientShapArgs
from tests.workers.parity import engine_request, matrix, parity_inputs
from workers.methods.gradient import GradientShap

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _run(run_engine, model_id: str, **args: Any) -> dict[str, Any]:
    inputs, targets = parity_inputs(model_id)
    request = engine_request(model_id, "gradient_shap", inputs, generated_texts=targets, method_args=args)
    return run_engine(**request)["sequences"][0]


def _scores(seq: dict[str, Any]) -> np.ndarray:
    side = "source_attributions" if seq["source_attributions"] is not None else "target_attributions"
    return matrix(seq[side])


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_same_seed_same_scores_other_seed_other_scores(run_engine, model_id: str) -> None:
    first = _run(run_engine, model_id, n_samples=4, stdevs=0.1, seed=7)
    again = _run(run_engine, model_id, n_samples=4, stdevs=0.1, seed=7)
    other = _run(run_engine, model_id, n_samples=4, stdevs=0.1, seed=8)
    assert first["source_attributions"] == again["source_attributions"]
    assert first["target_attributions"] == again["target_attributions"]
    a, b = _scores(first), _scores(other)
    assert not np.allclose(a[~np.isnan(a)], b[~np.isnan(b)])


def _direct(loaded: Any, seq: dict[str, Any], args: GradientShapArgs) -> np.ndarray:
    """Per step and sample: the point b + a (x + noise - b), the gradient of the target's probability at it,
    times (x + noise - b); averaged, L2 over the hidden size, each column scaled to sum 1."""
    model = loaded.model
    causal = seq["source_attributions"] is None
    target = torch.tensor([[t["id"] for t in seq["target"]]])
    source = None if causal else torch.tensor([[t["id"] for t in seq["source"]]])
    embed = model.get_input_embeddings()
    x = embed(target if causal else source)[0].detach()
    unk = loaded.tokenizer.unk_token_id
    eos = loaded.tokenizer.eos_token_id
    ids = target if causal else source
    base_ids = torch.where(ids == eos, ids, torch.full_like(ids, unk))
    b = embed(base_ids)[0].detach()
    method = GradientShap(args)
    alphas, (noise,) = method._draws((x[None],))
    columns = []
    for p in range(seq["attr_pos_start"], seq["attr_pos_end"]):
        total = torch.zeros_like(x if not causal else x[:p])
        for s in range(args.n_samples):
            xn = x + args.stdevs * noise[s, : x.shape[0]].float()
            if causal:
                xn = xn[:p]
                point = (b[:p] + alphas[s].float() * (xn - b[:p])).requires_grad_(True)
                logits = model(inputs_embeds=point[None]).logits[0, -1]
            else:
                point = (b + alphas[s].float() * (xn - b)).requires_grad_(True)
                decoder = model.get_decoder().get_input_embeddings()(target[:, :p])
                logits = model(inputs_embeds=point[None], decoder_inputs_embeds=decoder).logits[0, -1]
            prob = logits.softmax(-1)[target[0, p]]
            (grad,) = torch.autograd.grad(prob, point)
            total = total + grad * (xn - (b[:p] if causal else b))
        column = torch.linalg.vector_norm(total / args.n_samples, dim=-1)
        column = column / column.sum()
        full = torch.full((x.shape[0],), float("nan"))
        full[: column.shape[0]] = column
        columns.append(full)
    return torch.stack(columns, dim=1).numpy()


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-llama", "tiny-t5", "tiny-bart"])
def test_equals_the_direct_computation(run_engine, engine_model, model_id: str) -> None:
    args = GradientShapArgs(n_samples=3, stdevs=0.05, seed=11)
    seq = _run(run_engine, model_id, **args.model_dump())
    want = _direct(engine_model(model_id), seq, args)
    got = _scores(seq)
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-4)


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-bart"])
def test_many_noiseless_samples_approach_integrated_gradients(run_engine, model_id: str) -> None:
    inputs, targets = parity_inputs(model_id)

    def scores(method: str, args: dict[str, Any]) -> np.ndarray:
        request = engine_request(model_id, method, inputs, generated_texts=targets, method_args=args)
        return _scores(run_engine(**request)["sequences"][0])

    ig = scores("integrated_gradients", {"n_steps": 64})
    errors = [
        np.nanmax(np.abs(scores("gradient_shap", {"n_samples": n, "seed": 3}) - ig)) for n in (2, 32, 512)
    ]
    assert errors[2] < errors[0]
    assert errors[2] < 0.02, errors
