"""Copies for sequential integrated gradients (SIG, Enguehard 2023): integrated gradients run once per token,
that token moving from its baseline to its embedding while every other token keeps its embedding.

The reference loops over tokens (one integrated-gradients batch each); here the (token, path point) pairs of
one input are packed, in order, into groups that each fill one forward batch, so a forward and its batched
backward serve several tokens and every attributed step of the chunk at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SequentialGroup:
    """One forward batch: copy c moves token `tokens[c]` to path point `points[c]`."""

    tokens: torch.Tensor  # [copies] int64, the moved position
    points: torch.Tensor  # [copies] int64, the index of its path point (alpha / quadrature weight)
    embeds: torch.Tensor  # [copies, length, hidden], the input with that one token moved


def sequential_groups(
    x: torch.Tensor, baseline: torch.Tensor, alphas: torch.Tensor, group_size: int
) -> Iterator[SequentialGroup]:
    """The (token, point) copies of one input `x` / `baseline` (`[1, length, hidden]`), `group_size` at a
    time; `alphas` `[n_points]` places each point on its token's straight path."""
    length, n_points = x.shape[1], alphas.shape[0]
    alphas = alphas.to(device=x.device, dtype=torch.float32)
    total = length * n_points
    for lo in range(0, total, group_size):
        flat = torch.arange(lo, min(total, lo + group_size), device=x.device)
        tokens, points = flat // n_points, flat % n_points
        copies = torch.arange(len(flat), device=x.device)
        start, end = baseline[0, tokens].float(), x[0, tokens].float()
        embeds = x.detach().expand(len(flat), -1, -1).clone()
        # Points computed in float32, stored in the model's dtype.
        embeds[copies, tokens] = (start + alphas[points, None] * (end - start)).detach().to(x.dtype)
        yield SequentialGroup(tokens, points, embeds)
