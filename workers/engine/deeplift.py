"""DeepLIFT's rescale rule, as captum's `DeepLift` applies it, for the batched engine.

Captum runs the input and its baseline as one batch of two and, at every supported nonlinear *module*
(matched by exact type), replaces the backward by `grad_out * Δout / Δin` (Δ: input half minus baseline
half), keeping the module's own gradient where `|Δin| < eps`; every other op keeps its plain gradient.

Here the baseline runs first, in a forward of its own without gradients, that records each supported
module call's input and output (`Rescale.reference`); the input's forward then rescales each matching call
against that record (`Rescale.rescaled`). No op of these models mixes batch rows, so the input's gradient
is the same as captum's, while the batched backward only carries the input's rows, not the baseline's.

The rule is written with plain differentiable ops (no custom autograd Function), so the batched backward
(`is_grads_batched=True`, vmap over steps) needs no special batching rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

RESCALED_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)
"""The element-wise modules of captum's `SUPPORTED_NON_LINEAR`. Its other entries, `nn.Softmax` and
`nn.MaxPool1d/2d/3d`, are left out: no supported text model uses them as modules (attention calls the
softmax function), and captum's softmax rule normalises over the whole per-step tensor, which a batched
backward over a shared prefix cannot reproduce. They keep their plain gradient here."""

EPS = 1e-10
"""Captum's default `eps`: below this input difference the module's own gradient is used."""


def rescaled(x: torch.Tensor, y: torch.Tensor, x_ref: torch.Tensor, y_ref: torch.Tensor) -> torch.Tensor:
    """`y` (= module(x)) with the rescale rule as its backward towards `x`.

    The value is exactly `y`; the gradient reaching `x` is `grad * Δy / Δx` where `|Δx| >= EPS` and, where
    not, the module's own gradient (through `y`'s graph, masked), as captum's `nonlinear` rule.
    """
    # Differences in float32: EPS underflows in half precision.
    delta_in = x.detach().float() - x_ref.float()
    delta_out = y.detach().float() - y_ref.float()
    small = delta_in.abs() < EPS
    # Zero (not inf) in the unselected branch, or its masked gradient would become 0 * inf = NaN.
    ratio = torch.where(small, 0.0, delta_out / torch.where(small, 1.0, delta_in)).to(y.dtype)
    x_const, y_const = x.detach(), y.detach()
    return y_const + torch.where(small, y - y_const, (x - x_const) * ratio)


class Rescale:
    """The rescale rule at a model's supported nonlinear modules (all but `skip`, if given)."""

    def __init__(self, model: nn.Module, skip: nn.Module | None = None) -> None:
        # Exact types, as captum matches them (a subclass is not rescaled).
        self.modules = [m for m in model.modules() if type(m) in RESCALED_MODULES and m is not skip]
        self._references: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._inputs: dict[nn.Module, torch.Tensor] = {}

    def __bool__(self) -> bool:
        """Whether the model has any module to rescale (if not, DeepLIFT is the plain gradient)."""
        return bool(self.modules)

    @contextmanager
    def _hooked(self, pre_hook: Any, hook: Any) -> Iterator[None]:
        handles = []
        try:
            for module in self.modules:
                handles.append(module.register_forward_pre_hook(pre_hook))
                handles.append(module.register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._inputs.clear()

    def _keep_input(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Keep the module's input; an in-place module (`ReLU(inplace=True)`) gets a copy to overwrite."""
        self._inputs[module] = args[0]
        if getattr(module, "inplace", False):
            return (args[0].clone(), *args[1:])
        return None

    @contextmanager
    def reference(self) -> Iterator[None]:
        """Forwards in the block are the baseline's: every module call's input and output are recorded
        (in call order). Run it under `torch.no_grad()`."""
        self._references = {m: [] for m in self.modules}

        def hook(module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> None:
            self._references[module].append((self._inputs.pop(module).detach(), output.detach()))

        with self._hooked(self._keep_input, hook):
            yield

    @contextmanager
    def rescaled(self) -> Iterator[None]:
        """Forwards in the block with gradients enabled are the input's: the n-th call of each module is
        rescaled against the n-th recorded baseline call. Forwards without gradients (noisy ones) are left
        alone and do not count; calls past the record or of another shape (a later forward on other inputs,
        such as a contrastive one) keep their plain gradient."""
        calls = dict.fromkeys(self.modules, 0)

        def hook(module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
            x = self._inputs.pop(module)
            if not torch.is_grad_enabled():
                return None
            record = self._references.get(module, [])
            n = calls[module]
            calls[module] = n + 1
            if n >= len(record) or record[n][0].shape[1:] != x.shape[1:]:
                return None
            x_ref, y_ref = record[n]
            return rescaled(x, output, x_ref, y_ref)

        with self._hooked(self._keep_input, hook):
            yield
