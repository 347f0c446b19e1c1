"""Value zeroing: parity with the reference library and with a slow, direct implementation of its definition.

Two oracles:
- Inseq 0.7.1's `value_zeroing`, with two fixes for transformers 5 that leave its algorithm alone: its
  hook that hands each block's clean output on assumes blocks return tuples (GPT-2, Llama and BART blocks
  now return a tensor: it crashes), and GPT-2's value variable is now `value_states`, not `value`. Only T5
  runs unpatched; the patched oracle runs on all four tiny models. Its `euclidean` metric crashes on every
  model (it takes the pairwise `cdist` matrix of all positions where one distance per position is meant),
  so that metric is checked against the direct implementation only.
- A direct implementation of the definition: for each layer l and token t, one plain forward of the whole
  model in which only layer l's value projection zeroes token t's value vectors (the projection's `forward`
  is monkeypatched; modules located by hand per tiny model), and the distance between the hidden states the
  model reports (`output_hidden_states`) for layer l with and without it, at the position predicting each
  step. Then the reference's post-processing: distances under 1e-5 are 0, each (step, layer) sums to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from schemas.errors import InvalidRequestError
from tests.workers.parity import (
    CAUSAL,
    MODELS,
    SEQ2SEQ,
    assert_scores_equal,
    assert_sequence_matches,
    engine_request,
    expected_sequences,
    inseq_attribute,
    matrix,
    parity_inputs,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

METHOD = "value_zeroing"


# ---------------------------------------------------------------------------------------------------------
# Oracle 1: Inseq, fixed for transformers 5


def _tensor_safe_patch_hook(self: Any, block_idx: int, hidden_state_idx: int = 0) -> Callable[..., Any]:
    """Inseq's `get_states_extract_and_patch_hook`, also for blocks that return a tensor."""

    def hook(_module: Any, _args: Any, output: Any) -> Any:
        states = output if isinstance(output, torch.Tensor) else output[hidden_state_idx]
        self.corrupted_block_output_states[block_idx] = states.clone().float().detach().cpu()
        clean = self.clean_block_output_states[block_idx].to(states.device)
        if isinstance(output, torch.Tensor):
            return clean
        return output[:hidden_state_idx] + (clean,) + output[hidden_state_idx + 1 :]

    return hook


@pytest.fixture(scope="module")
def vz_inseq(inseq_model: Callable[[str, str], Any]) -> Iterator[Callable[[str, str], Any]]:
    """`inseq_model` with the reference's value zeroing fixed for transformers 5 (module doc)."""
    from inseq.attr.feat.ops.value_zeroing import ValueZeroing as InseqValueZeroing

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InseqValueZeroing, "get_states_extract_and_patch_hook", _tensor_safe_patch_hook)

        def get(model_id: str, method: str) -> Any:
            model = inseq_model(model_id, method)
            if model_id == "tiny-gpt2":
                patch.setattr(model.config, "value_vector", "value_states")
            return model

        yield get


def _inseq_units(units: Any) -> Any:
    """Our JSON zeroed units → Inseq's (int layer keys, `(start, end)` tuples)."""
    if isinstance(units, dict) and set(units) == {"start", "end"}:
        return (units["start"], units["end"])
    if isinstance(units, dict):
        return {int(k): _inseq_units(v) for k, v in units.items()}
    return units


# ---------------------------------------------------------------------------------------------------------
# Oracle 2: the definition, one plain forward per (layer, token)


def _value_projection(model: Any, model_id: str, layer: int, kind: str) -> tuple[torch.nn.Module, int, int]:
    """(module computing layer `layer`'s value vectors, offset of the value features, head size), by hand."""
    config = model.config
    if model_id == "tiny-gpt2":
        hidden = config.n_embd
        return model.transformer.h[layer].attn.c_attn, 2 * hidden, hidden // config.n_head
    if model_id == "tiny-llama":
        return model.model.layers[layer].self_attn.v_proj, 0, config.hidden_size // config.num_attention_heads
    if model_id == "tiny-t5":
        block = model.decoder.block[layer]
        module = block.layer[1].EncDecAttention.v if kind == "cross" else block.layer[0].SelfAttention.v
        return module, 0, config.d_kv
    if model_id == "tiny-bart":
        decoder_layer = model.model.decoder.layers[layer]
        module = decoder_layer.encoder_attn.v_proj if kind == "cross" else decoder_layer.self_attn.v_proj
        return module, 0, config.d_model // config.decoder_attention_heads
    raise AssertionError(model_id)


@contextmanager
def _zeroing(
    module: torch.nn.Module, offset: int, head_dim: int, heads: list[int], token: int
) -> Iterator[None]:
    original = module.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = original(x).clone()
        for h in heads:
            out[:, token, offset + h * head_dim : offset + (h + 1) * head_dim] = 0
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "forward", forward)
        yield


def _hidden_states(model: Any, source: list[int], target: list[int]) -> tuple[torch.Tensor, ...]:
    """The decoder's hidden states as the model reports them: embeddings, then one per layer."""
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            out = model(
                input_ids=torch.tensor([source]),
                decoder_input_ids=torch.tensor([target]),
                output_hidden_states=True,
                use_cache=False,
            )
            return out.decoder_hidden_states
        return model(
            input_ids=torch.tensor([target]), output_hidden_states=True, use_cache=False
        ).hidden_states


def direct_scores(
    model: Any,
    model_id: str,
    seq: dict[str, Any],
    kind: str,
    metric: str,
    heads: list[list[int] | None],
) -> np.ndarray:
    """`[tokens, n_steps, layers]`: the definition (module doc), tokens of the source (`cross`) or target."""
    source = [t["id"] for t in seq["source"]] if model.config.is_encoder_decoder else []
    target = [t["id"] for t in seq["target"]]
    positions = list(range(seq["attr_pos_start"], seq["attr_pos_end"]))
    n_tokens = len(source) if kind == "cross" else len(target)
    clean = _hidden_states(model, source, target)
    n_layers = len(clean) - 1
    dist = np.zeros((n_tokens, len(positions), n_layers))
    for layer in range(n_layers):
        chosen = heads[layer]
        if chosen is None:
            continue
        module, offset, head_dim = _value_projection(model, model_id, layer, kind)
        for token in range(n_tokens):
            with _zeroing(module, offset, head_dim, chosen, token):
                corrupted = _hidden_states(model, source, target)
            for j, p in enumerate(positions):
                a, b = clean[layer + 1][0, p - 1].double(), corrupted[layer + 1][0, p - 1].double()
                if metric == "cosine":
                    d = 1 - float(a @ b / (a.norm() * b.norm()))
                else:
                    d = float((a - b).norm())
                dist[token, j, layer] = d
    dist[dist < 1e-5] = 0
    if kind == "self":  # a step's prefix only
        for j, p in enumerate(positions):
            dist[p:, j] = np.nan
    total = np.nansum(dist, axis=0, keepdims=True)
    total[total == 0] = 1
    return dist / total


def granular(cells: list[list[Any]] | None, n_layers: int) -> np.ndarray | None:
    """A granular result matrix (a list of layer scores per cell, null cells) → `[rows, steps, layers]`."""
    if cells is None:
        return None
    return np.array([[[np.nan] * n_layers if c is None else c for c in row] for row in cells], dtype=float)


def _all_heads(n_layers: int, n_heads: int) -> list[list[int] | None]:
    return [list(range(n_heads))] * n_layers


def _value_heads(model_id: str) -> int:
    """Heads of the value tensor (key-value heads for Llama's grouped-query attention)."""
    return {"tiny-gpt2": 2, "tiny-llama": 2, "tiny-t5": 4, "tiny-bart": 4}[model_id]


# ---------------------------------------------------------------------------------------------------------
# Parity with Inseq (cosine; default aggregation: mean over layers, then each column sums to 1)


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("mode", ["forced", "greedy"])
def test_parity(run_engine, vz_inseq, model_id: str, mode: str) -> None:
    inputs, targets = parity_inputs(model_id)
    forced = targets if mode == "forced" else None
    want = expected_sequences(inseq_attribute(vz_inseq, model_id, METHOD, inputs, forced))
    got = run_engine(**engine_request(model_id, METHOD, inputs, generated_texts=forced))
    assert_sequence_matches(got["sequences"][0], want[0])


@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_parity_attribute_target(run_engine, vz_inseq, model_id: str) -> None:
    inputs, targets = parity_inputs(model_id)
    want = expected_sequences(
        inseq_attribute(vz_inseq, model_id, METHOD, inputs, targets, attribute_target=True)
    )
    assert want[0]["target_attributions"] is not None
    got = run_engine(
        **engine_request(model_id, METHOD, inputs, generated_texts=targets, attribute_target=True)
    )
    assert_sequence_matches(got["sequences"][0], want[0])


ZEROED_UNITS = [
    {"decoder_zeroed_units_indices": 0, "cross_zeroed_units_indices": -1},
    {"decoder_zeroed_units_indices": [1], "cross_zeroed_units_indices": {"start": 1, "end": 3}},
    {"decoder_zeroed_units_indices": {"1": 0}, "cross_zeroed_units_indices": {"0": [0, 2], "1": 3}},
]


@pytest.mark.parametrize("units", ZEROED_UNITS, ids=["one", "range-or-list", "per-layer"])
@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-llama", "tiny-bart"])
def test_parity_zeroed_units(run_engine, vz_inseq, model_id: str, units: dict[str, Any]) -> None:
    inputs, targets = parity_inputs(model_id)
    attribute_target = model_id in SEQ2SEQ
    if model_id in CAUSAL:
        units = {"decoder_zeroed_units_indices": units["decoder_zeroed_units_indices"]}
    want = expected_sequences(
        inseq_attribute(
            vz_inseq,
            model_id,
            METHOD,
            inputs,
            targets,
            attribute_target=attribute_target,
            **{k: _inseq_units(v) for k, v in units.items()},
        )
    )
    got = run_engine(
        **engine_request(
            model_id,
            METHOD,
            inputs,
            generated_texts=targets,
            attribute_target=attribute_target,
            method_args=units,
        )
    )
    assert_sequence_matches(got["sequences"][0], want[0])


def test_parity_attr_pos_decoder_only(run_engine, vz_inseq, engine_model) -> None:
    """Inseq drops the target rows from `attr_pos_end` on and makes `source` the target up to
    `attr_pos_start` (see test_engine_parity.py); the scores are compared as there."""
    model_id = "tiny-gpt2"
    inputs, targets = parity_inputs(model_id)
    prompt = engine_model(model_id).tokenizer(inputs[0]).input_ids
    start, end = len(prompt) + 1, len(prompt) + 3
    want = expected_sequences(
        inseq_attribute(vz_inseq, model_id, METHOD, inputs, targets, attr_pos_start=start, attr_pos_end=end)
    )[0]
    got = run_engine(
        **engine_request(
            model_id, METHOD, inputs, generated_texts=targets, attr_pos_start=start, attr_pos_end=end
        )
    )["sequences"][0]
    assert_sequence_matches(got, want, extra_null_rows=True, check_source=False)


@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_parity_attr_pos_encoder_decoder(run_engine, vz_inseq, model_id: str) -> None:
    """Engine positions [2, 4) == columns 1..2 of a full Inseq run (Inseq would attribute 2..4)."""
    inputs, targets = parity_inputs(model_id)
    start, end = 2, 4
    full = expected_sequences(
        inseq_attribute(vz_inseq, model_id, METHOD, inputs, targets, attribute_target=True)
    )[0]
    cols = slice(start - full["attr_pos_start"], end - full["attr_pos_start"])
    got = run_engine(
        **engine_request(
            model_id,
            METHOD,
            inputs,
            generated_texts=targets,
            attr_pos_start=start,
            attr_pos_end=end,
            attribute_target=True,
        )
    )["sequences"][0]
    assert_scores_equal(
        "source_attributions", matrix(got["source_attributions"]), full["source_attributions"][:, cols]
    )
    assert_scores_equal(
        "target_attributions", matrix(got["target_attributions"]), full["target_attributions"][:, cols]
    )


# ---------------------------------------------------------------------------------------------------------
# The direct implementation: every model (Llama included), both metrics, per layer (granular scores)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("model_id", MODELS)
def test_matches_the_definition(run_engine, engine_model, model_id: str, metric: str) -> None:
    model = engine_model(model_id).model
    inputs, targets = parity_inputs(model_id)
    enc_dec = model_id in SEQ2SEQ
    got = run_engine(
        **engine_request(
            model_id,
            METHOD,
            inputs,
            generated_texts=targets,
            attribute_target=enc_dec,
            method_args={"similarity_metric": metric},
            aggregation={"granular": True},
        )
    )["sequences"][0]
    n_layers = 2
    heads = _all_heads(n_layers, _value_heads(model_id))
    target = direct_scores(model, model_id, got, "self", metric, heads)
    assert_scores_equal("target", granular(got["target_attributions"], n_layers), target)
    if enc_dec:
        source = direct_scores(model, model_id, got, "cross", metric, heads)
        assert_scores_equal("source", granular(got["source_attributions"], n_layers), source)
    else:
        assert got["source_attributions"] is None


@pytest.mark.parametrize("model_id", ["tiny-llama", "tiny-t5"])
def test_zeroed_heads_match_the_definition(run_engine, engine_model, model_id: str) -> None:
    """Zeroing head 0 only differs from zeroing every head, and each matches the definition; a layer left
    out of a per-layer choice scores 0."""
    model = engine_model(model_id).model
    inputs, targets = parity_inputs(model_id)
    kind = "cross" if model_id in SEQ2SEQ else "self"
    side = "source_attributions" if kind == "cross" else "target_attributions"
    key = "cross_zeroed_units_indices" if kind == "cross" else "decoder_zeroed_units_indices"
    n_layers, n_heads = 2, _value_heads(model_id)
    results: dict[str, np.ndarray] = {}
    cases: list[tuple[str, Any, list[list[int] | None]]] = [
        ("all", None, _all_heads(n_layers, n_heads)),
        ("head0", 0, [[0]] * n_layers),
        ("layer1-last-head", {"1": -1}, [None, [n_heads - 1]]),
        ("layer0-head1", {"0": [1]}, [[1], None]),  # the forwards stop after layer 0
    ]
    for name, units, heads in cases:
        got = run_engine(
            **engine_request(
                model_id,
                METHOD,
                inputs,
                generated_texts=targets,
                method_args={key: units},
                aggregation={"granular": True},
            )
        )["sequences"][0]
        scores = granular(got[side], n_layers)
        assert scores is not None
        assert_scores_equal(name, scores, direct_scores(model, model_id, got, kind, "cosine", heads))
        results[name] = scores
    assert np.nanmax(np.abs(results["all"] - results["head0"])) > 1e-2
    assert np.nansum(np.abs(results["layer1-last-head"][:, :, 0])) == 0
    assert np.nansum(np.abs(results["layer0-head1"][:, :, 1])) == 0


# ---------------------------------------------------------------------------------------------------------
# Batching, choices and errors


def test_copies_are_batched_and_chunking_does_not_change_scores(engine_model) -> None:
    """Every token's copy is a batch row of shared forwards, and any chunking gives the same scores."""
    from workers.engine.value_zeroing import block_stack, layer_distances

    loaded = engine_model("tiny-llama")
    model = loaded.model
    ids = torch.tensor([loaded.tokenizer("The cat sat on the mat. A dog").input_ids])
    stack = block_stack(model.base_model, model.config, "self", "LlamaForCausalLM")
    batches: list[int] = []

    def run(batch: int) -> torch.Tensor:
        batches.append(batch)
        embeds = model.get_input_embeddings()(ids).expand(batch, -1, -1)
        return model.base_model(inputs_embeds=embeds, use_cache=False).last_hidden_state

    n = ids.shape[1]
    tokens, rows = list(range(n)), list(range(n))
    heads: list[list[int] | None] = [[0, 1], [0, 1]]
    whole = layer_distances(stack, run, tokens, rows, heads, "cosine", tokens_per_forward=n)
    assert batches == [1, n]  # the clean forward, then all copies in one
    batches.clear()
    chunked = layer_distances(stack, run, tokens, rows, heads, "cosine", tokens_per_forward=3)
    assert batches == [1] + [min(3, n - lo) for lo in range(0, n, 3)]
    torch.testing.assert_close(whole, chunked, atol=1e-6, rtol=0)
    # Causal attention: zeroing token t leaves earlier positions alone.
    later = torch.tensor(rows)[None, :] < torch.tensor(tokens)[:, None]
    assert float(whole[later].abs().max()) < 1e-5
    assert float(whole[~later].abs().min()) > 0


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_a_top_level_range_is_a_range(run_engine, model_id: str) -> None:
    """`{"start", "end"}` also validates as a dict of layers: it must still mean a range of heads."""
    inputs, targets = parity_inputs(model_id)
    key = "cross_zeroed_units_indices" if model_id in SEQ2SEQ else "decoder_zeroed_units_indices"

    def run(units: Any) -> Any:
        request = engine_request(model_id, METHOD, inputs, generated_texts=targets, method_args={key: units})
        seq = run_engine(**request)["sequences"][0]
        return seq["source_attributions" if model_id in SEQ2SEQ else "target_attributions"]

    assert run({"start": 0, "end": 2}) == run([0, 1])


@pytest.mark.parametrize(
    "units",
    [5, {"start": 1, "end": 9}, {"2": 0}, {"1": 0, "-1": 1}],
    ids=["head", "range", "layer", "twice"],
)
def test_bad_zeroed_units_are_refused(run_engine, units: Any) -> None:
    inputs, targets = parity_inputs("tiny-gpt2")
    request = engine_request(
        "tiny-gpt2",
        METHOD,
        inputs,
        generated_texts=targets,
        method_args={"decoder_zeroed_units_indices": units},
    )
    with pytest.raises(InvalidRequestError):
        run_engine(**request)


@pytest.mark.parametrize("units", [{"x": 0}, {"start": 1}], ids=["key", "half-range"])
def test_malformed_zeroed_units_are_validation_errors(units: Any) -> None:
    """Layer keys must be integers and a range needs both ends: the request itself is refused (a 422)."""
    from pydantic import ValidationError

    from schemas.attribution import AttributionRequest

    with pytest.raises(ValidationError):
        AttributionRequest(inputs=["x"], method=METHOD, method_args={"decoder_zeroed_units_indices": units})


def test_unknown_architecture_is_a_clear_error() -> None:
    """GPT-NeoX computes queries, keys and values in one interleaved projection: unsupported, and said so."""
    import transformers as tf

    from workers.engine.value_zeroing import UnsupportedArchitectureError, block_stack

    config = tf.GPTNeoXConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    model = tf.GPTNeoXForCausalLM(config)
    with pytest.raises(
        UnsupportedArchitectureError, match=r"GPTNeoX.*attention modules without one: \['attention'\]"
    ):
        block_stack(model.base_model, config, "self", "GPTNeoXForCausalLM")


def test_default_aggregation_is_the_mean_over_layers(run_engine) -> None:
    inputs, targets = parity_inputs("tiny-gpt2")
    request = engine_request("tiny-gpt2", METHOD, inputs, generated_texts=targets)
    layers = granular(
        run_engine(**request, aggregation={"granular": True})["sequences"][0]["target_attributions"], 2
    )
    default = matrix(run_engine(**request)["sequences"][0]["target_attributions"])
    assert layers is not None
    mean = layers.mean(axis=-1)
    want = mean / np.nansum(mean, axis=0, keepdims=True)
    assert_scores_equal("target", default, want)
