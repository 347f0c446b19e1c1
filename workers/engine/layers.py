"""Layers chosen by module name, and standing in for a layer's output during a forward (layer methods).

A layer method attributes to the output of one module instead of the input embeddings: a forward hook
replaces the module's output by a leaf (gradient x activation, DeepLIFT) or by interpolated activations
(integrated gradients), and `step_gradients` differentiates with respect to that tensor, every step of a
chunk in one batched backward. Below the layer nothing needs a gradient, so the backward stops there.

The embedding layer (the default, as in the reference library) is not substituted: its output is the
engine's input embeddings, so the layer methods then are the plain gradient methods on the embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from schemas.errors import InvalidRequestError
from workers.engine.model_io import SequenceIO


@dataclass(frozen=True)
class TargetLayer:
    """The layer a layer method attributes to."""

    name: str | None
    module: nn.Module | None
    """None: the embedding layer, whose output is the engine's input embeddings."""
    on_target: bool
    """Its output is one vector per target token (decoder, or a decoder-only body); else per source token."""

    @property
    def is_embedding(self) -> bool:
        return self.module is None


def _embedding_modules(io: SequenceIO) -> list[nn.Module]:
    model = io.model
    found = [model.get_input_embeddings()]
    if io.is_encoder_decoder:
        # transformers 5 gives the encoder and decoder their own embedding modules (tied weights).
        found += [model.get_encoder().get_input_embeddings(), model.get_decoder().get_input_embeddings()]
    return found


def layer_names(io: SequenceIO) -> list[str]:
    """The names worth offering for `target_layer`: the embedding modules, each block (an item of a
    module list) and the blocks' direct parts. Any name of `model.named_modules()` is accepted."""
    embeddings = _embedding_modules(io)
    names = [name for name, module in io.model.named_modules() if any(module is e for e in embeddings)]
    for name, module in io.model.named_modules():
        if isinstance(module, nn.ModuleList):
            for index, block in module.named_children():
                names.append(f"{name}.{index}")
                names.extend(f"{name}.{index}.{part}" for part, _ in block.named_children())
    return names


def resolve_layer(io: SequenceIO, name: str | None) -> TargetLayer:
    """The layer called `name` in the model (None, or any embedding module: the embedding layer).

    Raises:
        InvalidRequestError: no such module, or one whose output is not per token (the whole model, the
            LM head); the problem lists valid names.
    """
    if name is None:
        return TargetLayer(None, None, on_target=not io.is_encoder_decoder)
    module = dict(io.model.named_modules()).get(name)
    if module is None or module is io.model or module is io.model.get_output_embeddings():
        reason = "is not a module of" if module is None else "has no per-token output in"
        valid = layer_names(io)
        raise InvalidRequestError(
            f"target_layer {name!r} {reason} model {io.loaded.id!r}; valid names include "
            f"{', '.join(valid[:12])}{', ...' if len(valid) > 12 else ''} (any name of the model's "
            "named_modules(), listed in valid_layers)",
            valid_layers=valid,
        )
    if any(module is e for e in _embedding_modules(io)):
        return TargetLayer(name, None, on_target=not io.is_encoder_decoder)
    in_encoder = io.is_encoder_decoder and any(module is m for m in io.model.get_encoder().modules())
    return TargetLayer(name, module, on_target=not in_encoder)


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, ModelOutput | tuple) and isinstance(output[0], torch.Tensor):
        return output[0]
    raise InvalidRequestError(f"the target layer's output ({type(output).__name__}) is not a tensor")


def _with_first(output: Any, tensor: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return tensor
    if isinstance(output, ModelOutput):
        output[next(iter(output.keys()))] = tensor
        return output
    return (tensor, *output[1:])


@contextmanager
def substituted_output(
    module: nn.Module, replace: Callable[[torch.Tensor], torch.Tensor | None]
) -> Iterator[None]:
    """In the block, each call of `module` outputs `replace(output)` (its first tensor, for modules that
    return a tuple or a model output) unless that is None. The hook is always removed."""

    def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
        new = replace(_first_tensor(output))
        return None if new is None else _with_first(output, new)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def output_leaf(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The module's output in the block's first forward with gradients becomes a leaf that requires grad
    (the yielded list receives it: pass it as `step_gradients(extra_inputs=...)`). Other forwards, such as
    noisy ones without gradients, keep the module's own output."""
    leaves: list[torch.Tensor] = []

    def replace(output: torch.Tensor) -> torch.Tensor | None:
        if leaves or not torch.is_grad_enabled():
            return None
        leaves.append(output.detach().requires_grad_(True))
        return leaves[0]

    with substituted_output(module, replace):
        yield leaves


@contextmanager
def output_replaced(module: nn.Module, value: torch.Tensor) -> Iterator[None]:
    """Every call of the module whose output has `value`'s shape outputs `value` (interpolated activations),
    as captum's layer integrated gradients does. Calls of another shape, from a forward on other inputs (a
    contrastive one), keep their own output."""

    def replace(output: torch.Tensor) -> torch.Tensor | None:
        return value if output.shape == value.shape else None

    with substituted_output(module, replace):
        yield


@contextmanager
def first_output(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The yielded list receives the module's output (detached) from its first call in the block."""
    seen: list[torch.Tensor] = []

    def replace(output: torch.Tensor) -> None:
        if not seen:
            seen.append(output.detach())

    with substituted_output(module, replace):
        yield seen


def check_per_token(layer: TargetLayer, output: torch.Tensor, batch: int, length: int) -> None:
    """The layer's output must hold one vector per sequence and token of its side (`[batch, length, ...]`)."""
    if output.ndim < 3 or tuple(output.shape[:2]) != (batch, length):
        side = "target" if layer.on_target else "source"
        raise InvalidRequestError(
            f"target_layer {layer.name!r} outputs shape {tuple(output.shape)}, not one vector per sequence "
            f"and {side} token ([{batch}, {length}, ...]); choose a layer inside the model's blocks"
        )
