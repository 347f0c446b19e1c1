"""Value zeroing's scoring around the model: which heads are zeroed, how many zeroed copies go in one forward,
the forwards of each model kind, and the normalisation of distances into scores (the reference's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from schemas.errors import InvalidRequestError
from schemas.methods import Indices, ZeroedUnits
from schemas.units import unit_indices
from workers.engine.model_io import SequenceIO, config_int
from workers.engine.value_zeroing import BlockStack, RunStack, UnsupportedArchitectureError, block_stack

MIN_SCORE = 1e-5
"""Distances below this are zero (the reference's `min_score_threshold`): rounding noise, not mixing."""

FORWARD_BUDGET_BYTES = 512 * 2**20
"""Activation memory allowed for one batched forward of zeroed copies; sets the copies per forward."""

MAX_COPIES_PER_FORWARD = 256


def copies_per_forward(io: SequenceIO, length: int, memory_length: int) -> int:
    """Zeroed copies per forward, from a rough per-copy activation estimate of one block at a time
    (hidden states, MLP activations, eager attention weights over self and cross keys)."""
    config = io.model.config.get_text_config(decoder=True)
    hidden = config_int(config, "hidden_size", "d_model", default=512)
    inner = config_int(config, "intermediate_size", "d_ff", default=4 * hidden)
    heads = config_int(config, "num_attention_heads", "num_heads", default=8)
    per_copy = 4 * length * (8 * hidden + 2 * inner + 3 * heads * (length + memory_length))
    return max(1, min(MAX_COPIES_PER_FORWARD, FORWARD_BUDGET_BYTES // per_copy))


def _layer_key(key: str, n_layers: int, what: str) -> int:
    try:
        layer = int(key)
    except ValueError:
        raise InvalidRequestError(f"{what}: layer key {key!r} is not an integer") from None
    if not -n_layers <= layer < n_layers:
        raise InvalidRequestError(f"{what}: layer {layer} is out of range, the model has {n_layers} layers")
    return layer % n_layers


def zeroed_heads(units: ZeroedUnits | None, stack: BlockStack, what: str) -> list[list[int] | None]:
    """The value heads zeroed in each layer (None: the layer is not zeroed, its scores are 0).

    None zeroes every head; one index, a range or a list zeroes those heads in every layer; a dict
    `{"<layer>": heads}` zeroes only the layers it names (negative layers count from the end). Heads are the
    value tensor's heads: key-value heads in grouped-query attention, as in the reference."""
    if units is None:
        return [list(range(site.n_heads)) for site in stack.sites]
    if isinstance(units, Mapping):
        per_layer: dict[int, Indices] = {}
        for key, heads in units.items():
            layer = _layer_key(key, stack.n_layers, what)
            if layer in per_layer:
                raise InvalidRequestError(f"{what}: layer {layer} is named twice")
            per_layer[layer] = heads
        return [
            unit_indices(per_layer[layer], site.n_heads, f"{what} heads") if layer in per_layer else None
            for layer, site in enumerate(stack.sites)
        ]
    return [unit_indices(units, site.n_heads, f"{what} heads") for site in stack.sites]


def stack_of(owner: torch.nn.Module, config: object, kind: Literal["self", "cross"], name: str) -> BlockStack:
    """The block stack with the value sites of `kind` attention; an unsupported model is a request error."""
    try:
        return block_stack(owner, config, kind, name)
    except (UnsupportedArchitectureError, LookupError) as exc:
        raise InvalidRequestError(str(exc)) from exc


def ones(batch: int, length: int, device: torch.device) -> torch.Tensor:
    return torch.ones((batch, length), dtype=torch.long, device=device)


def pad_target(dist: torch.Tensor, io: SequenceIO) -> torch.Tensor:
    """Target-side scores over the prefix → over the whole target (the extra rows are masked later)."""
    missing = io.target_ids.shape[1] - dist.shape[0]
    return torch.cat([dist, dist.new_zeros(missing, *dist.shape[1:])]) if missing else dist


def decoder_only_run(backbone: torch.nn.Module, target: torch.Tensor) -> RunStack:
    def run(batch: int) -> torch.Tensor:
        return backbone(
            inputs_embeds=target.expand(batch, -1, -1),
            attention_mask=ones(batch, target.shape[1], target.device),
            use_cache=False,
        ).last_hidden_state

    return run


def decoder_run(decoder: torch.nn.Module, target: torch.Tensor, memory: torch.Tensor) -> RunStack:
    def run(batch: int) -> torch.Tensor:
        return decoder(
            inputs_embeds=target.expand(batch, -1, -1),
            attention_mask=ones(batch, target.shape[1], target.device),
            encoder_hidden_states=memory.expand(batch, -1, -1),
            encoder_attention_mask=ones(batch, memory.shape[1], memory.device),
            use_cache=False,
        ).last_hidden_state

    return run
