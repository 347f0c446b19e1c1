"""Value zeroing's model machinery: where each attention module computes its value vectors, and batched
forwards in which row b zeroes token b's value vectors in every layer at once.

Every layer's output is replaced by its clean counterpart before the next layer reads it (as the reference
library does), so the change of layer l's output comes from the zeroing in layer l alone, and one forward
measures every layer. The value vectors are zeroed by a forward hook on the projection that computes them
(`v_proj`, `v`, or the value third of GPT-2's fused `c_attn`), which works with any attention kernel,
instead of the reference's patching of local variables by name (fragile across `transformers` versions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

SEPARATE_VALUE_PROJECTIONS = ("v_proj", "v", "value", "v_lin")
"""Names of a value projection of its own inside an attention module (Llama, BART and most others: `v_proj`;
T5: `v`; BERT-like: `value`; DistilBERT: `v_lin`)."""

CROSS_ATTENTION_MARKERS = ("encoder_attn", "encdecattention", "crossattention", "cross_attn")
"""Lower-cased parts of a module path naming cross-attention rather than self-attention."""

Metric = Literal["cosine", "euclidean"]

RunStack = Callable[[int], torch.Tensor]
"""Runs a block stack on its (clean) inputs repeated over `batch` rows; returns its final output
`[batch, length, hidden]` (after the stack's final norm, if it has one)."""


@dataclass(frozen=True)
class ValueSite:
    """Where one attention module's value vectors come out: features `offset + h * head_dim` to
    `offset + (h + 1) * head_dim` of `projection`'s output hold value head h."""

    projection: nn.Module
    offset: int
    n_heads: int
    head_dim: int

    def columns(self, heads: list[int], device: torch.device) -> torch.Tensor:
        cols = [self.offset + h * self.head_dim + d for h in heads for d in range(self.head_dim)]
        return torch.tensor(cols, device=device, dtype=torch.long)


@dataclass(frozen=True)
class BlockStack:
    """A stack of transformer blocks and, per block, the value site of the attention being zeroed."""

    blocks: nn.ModuleList
    sites: list[ValueSite]

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


class UnsupportedArchitectureError(ValueError):
    """Value zeroing does not know where this model's attention computes its value vectors."""


# -- finding the value projections -------------------------------------------------------------------------


def find_block_stack(module: nn.Module) -> nn.ModuleList:
    """The first `nn.ModuleList` in `module` (depth first, in registration order): its transformer blocks,
    as the reference library finds them."""
    if isinstance(module, nn.ModuleList):
        return module
    for child in module.children():
        try:
            return find_block_stack(child)
        except LookupError:
            continue
    raise LookupError(f"no block stack (nn.ModuleList) in {type(module).__name__}")


def _head_dim(attention: nn.Module) -> int | None:
    for name in ("head_dim", "key_value_proj_dim", "attention_head_size", "head_size"):
        value = getattr(attention, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _out_features(projection: nn.Module) -> int | None:
    for name in ("out_features", "nf"):  # nn.Linear (and quantised linears); GPT-2's Conv1D
        value = getattr(projection, name, None)
        if isinstance(value, int):
            return value
    return None


def _site(attention: nn.Module, config: Any) -> ValueSite | None:
    """The value site of `attention` if it is an attention module holding a known value projection."""
    head_dim = _head_dim(attention)
    if head_dim is None and "attention" not in type(attention).__name__.lower():
        return None  # not an attention module (a block, an MLP...)
    if head_dim is None:
        head_dim = getattr(config, "head_dim", None) or (
            getattr(config, "hidden_size", 0) // max(1, getattr(config, "num_attention_heads", 1))
        )
    for name in SEPARATE_VALUE_PROJECTIONS:
        projection = getattr(attention, name, None)
        if isinstance(projection, nn.Module) and (features := _out_features(projection)):
            return ValueSite(projection, 0, features // head_dim, head_dim)
    # GPT-2 family: one Conv1D computes [query | key | value], `split_size` features each.
    fused = getattr(attention, "c_attn", None)
    split = getattr(attention, "split_size", None)
    if isinstance(fused, nn.Module) and isinstance(split, int) and _out_features(fused) == 3 * split:
        return ValueSite(fused, 2 * split, split // head_dim, head_dim)
    return None


def _attention_sites(block: nn.Module, config: Any) -> tuple[list[tuple[str, ValueSite]], list[str]]:
    """Value sites of `block`'s attention modules by path, and the paths of attention-looking modules whose
    value vectors could not be located."""
    sites: list[tuple[str, ValueSite]] = []
    unknown: list[str] = []
    for path, module in block.named_modules():
        if any(path.startswith(p + ".") for p, _ in sites):
            continue  # inside an attention module already found
        site = _site(module, config)
        if site is not None:
            sites.append((path, site))
        elif "attention" in type(module).__name__.lower() and not any(
            isinstance(m, nn.ModuleList) for m in module.children()
        ):
            unknown.append(path)
    # Wrappers around a found attention (T5's `T5LayerSelfAttention`) are not unknown attentions.
    unknown = [u for u in unknown if not any(p.startswith(u + ".") for p, _ in sites)]
    return sites, unknown


def _is_cross(path: str) -> bool:
    lowered = path.lower()
    return any(marker in lowered for marker in CROSS_ATTENTION_MARKERS)


def block_stack(
    stack_owner: nn.Module, config: Any, kind: Literal["self", "cross"], model_name: str
) -> BlockStack:
    """The blocks of `stack_owner` (a decoder-only backbone, an encoder or a decoder) with the value site of
    each block's self- or cross-attention. Raises `UnsupportedArchitectureError` when a block does not
    have exactly one such attention with a recognised value projection."""
    blocks = find_block_stack(stack_owner)
    sites: list[ValueSite] = []
    for index, block in enumerate(blocks):
        found, unknown = _attention_sites(block, config)
        chosen = [site for path, site in found if _is_cross(path) == (kind == "cross")]
        if len(chosen) != 1:
            raise UnsupportedArchitectureError(
                f"value zeroing does not support {model_name}: block {index} "
                f"({type(block).__name__}) has {len(chosen)} {kind}-attention modules with a known value "
                f"projection (found: {[p for p, _ in found] or 'none'}; attention modules without one: "
                f"{unknown or 'none'}; known value projections: {', '.join(SEPARATE_VALUE_PROJECTIONS)}, "
                "or GPT-2's fused c_attn)"
            )
        sites.append(chosen[0])
    return BlockStack(blocks, sites)


# -- hooks -------------------------------------------------------------------------------------------------


def _hidden(output: Any) -> torch.Tensor:
    """The hidden states in a block's output (a tensor, or a tuple that starts with them)."""
    return output if isinstance(output, torch.Tensor) else output[0]


@contextmanager
def zeroed_values(stack: BlockStack, heads: list[list[int] | None], tokens: list[int]) -> Iterator[None]:
    """While active, batch row b of every forward through `stack` has token `tokens[b]`'s value vectors zeroed
    in the heads `heads[l]` of each layer l (no zeroing where `heads[l]` is None)."""

    def hook_for(site: ValueSite, chosen: list[int]) -> Callable[..., torch.Tensor]:
        def hook(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
            rows = torch.arange(len(tokens), device=output.device)[:, None]
            cols = site.columns(chosen, output.device)[None, :]
            at = torch.tensor(tokens, device=output.device)[:, None]
            output = output.clone()  # the projection's output may be reused elsewhere (never in place)
            output[rows, at, cols] = 0
            return output

        return hook

    with ExitStack() as handles:
        for site, chosen in zip(stack.sites, heads, strict=True):
            if chosen:
                handle = site.projection.register_forward_hook(hook_for(site, chosen))
                handles.callback(handle.remove)
        yield


class _Enough(Exception):  # noqa: N818 - control flow, not an error
    """Raised by a block hook once the last layer of interest has run: the rest of the forward is skipped."""


@contextmanager
def block_outputs(
    stack: BlockStack,
    on_output: Callable[[int, torch.Tensor], None],
    clean: list[torch.Tensor] | None = None,
    stop_after: int | None = None,
) -> Iterator[None]:
    """While active, `on_output(layer, hidden)` sees each block's output hidden states (the last block's
    excepted: its output is read after the stack's final norm, from the stack's output). With `clean`
    (each block's clean output, `[1, length, hidden]`), every block but the last then hands its clean output
    on, so the next block reads unperturbed inputs. With `stop_after`, the forward is cut short (`_Enough`)
    after that block's hook."""

    def hook_for(layer: int) -> Callable[..., Any]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
            hidden = _hidden(output)
            on_output(layer, hidden)
            if layer == stop_after:
                raise _Enough
            if clean is None:
                return None
            patched = clean[layer].to(hidden.device).expand_as(hidden)
            return patched if isinstance(output, torch.Tensor) else (patched, *output[1:])

        return hook

    with ExitStack() as handles:
        for layer, block in enumerate(stack.blocks[:-1]):
            handles.callback(block.register_forward_hook(hook_for(layer)).remove)
        yield


def _run_until(run: RunStack, batch: int) -> torch.Tensor | None:
    """The stack's output, or None when a hook cut the forward short."""
    try:
        return run(batch)
    except _Enough:
        return None


# -- distances -----------------------------------------------------------------------------------------------


def distance(clean: torch.Tensor, corrupted: torch.Tensor, metric: Metric) -> torch.Tensor:
    """Per-vector distance over the last dimension, in float32: 1 - cosine similarity (the reference's
    `nn.CosineSimilarity`, eps 1e-8), or the Euclidean distance."""
    clean, corrupted = clean.float(), corrupted.float()
    if metric == "cosine":
        return 1 - nn.functional.cosine_similarity(clean, corrupted, dim=-1)
    return torch.linalg.vector_norm(clean - corrupted, ord=2, dim=-1)


def layer_distances(
    stack: BlockStack,
    run: RunStack,
    tokens: list[int],
    rows: list[int],
    heads: list[list[int] | None],
    metric: Metric,
    tokens_per_forward: int,
) -> torch.Tensor:
    """`[len(tokens), len(rows), n_layers]` (float32): for each token t, position r and layer l, the distance
    between layer l's clean output at r and its output when t's value vectors are zeroed in layer l's
    attention (heads `heads[l]`) and its input is clean. Layers with `heads[l]` None are not zeroed: 0.

    The zeroed copies are the batch rows of the forwards, `tokens_per_forward` at a time. Each layer's
    distances are taken as the forward passes it, so only one layer's corrupted states exist at a time; the
    forward stops after the last zeroed layer."""
    n_layers = stack.n_layers
    zeroed = [layer for layer in range(n_layers) if heads[layer]]
    if not zeroed:
        return torch.zeros(len(tokens), len(rows), n_layers)
    last_layer = n_layers - 1
    stop = None if zeroed[-1] == last_layer else zeroed[-1]
    with torch.inference_mode():
        clean: list[torch.Tensor] = []
        with block_outputs(stack, lambda _layer, hidden: clean.append(hidden), stop_after=stop):
            clean_last = _run_until(run, 1)
        clean_rows = [out[:, rows] for out in clean]
        if clean_last is not None:
            clean_rows.append(clean_last[:, rows])
        result = torch.zeros(len(tokens), len(rows), n_layers, device=clean_rows[0].device)
        for lo in range(0, len(tokens), tokens_per_forward):
            chunk = tokens[lo : lo + tokens_per_forward]

            def measure(layer: int, hidden: torch.Tensor, lo: int = lo, n: int = len(chunk)) -> None:
                if heads[layer]:
                    index = torch.tensor(rows, device=hidden.device)
                    d = distance(clean_rows[layer], hidden[:, index], metric)
                    result[lo : lo + n, :, layer] = d.to(result.device)

            with zeroed_values(stack, heads, chunk), block_outputs(stack, measure, clean, stop):
                last = _run_until(run, len(chunk))
            if last is not None:
                measure(last_layer, last)
    return result
