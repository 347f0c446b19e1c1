"""ReAGent's probing loop (Zhao and Shan, 2024), batched over every probe of every step of a chunk; the method
itself is `workers.methods.perturbation.Reagent`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from schemas.methods import ReagentArgs


@dataclass(frozen=True)
class ProbeTask:
    """What ReAGent probes for a chunk of steps.

    `ids` are the attributed tokens (source, then target prefix, as attributed); step j reads the features
    where `reads[j]` is set and explains token `targets[j]`, whose probability on the unperturbed input is
    `p_original[j]`. `proposal` (`[features, vocab]`, rows summing to 1) gives the replacement tokens.
    """

    ids: torch.Tensor
    reads: torch.Tensor
    targets: torch.Tensor
    p_original: torch.Tensor
    proposal: torch.Tensor


Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""`(ids [rows, features], step index [rows])` → logits `[rows, vocab]` of each row's step."""


def _sample(cdf: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """`[n, features]` tokens, each feature's from its row of the cumulative proposal `cdf`."""
    u = torch.rand((cdf.shape[0], n), generator=generator, dtype=cdf.dtype).to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[1] - 1).T


def reagent_probe(
    task: ProbeTask, predict: Predict, args: ReagentArgs, generator: torch.Generator
) -> torch.Tensor:
    """ReAGent's importance scores of every step, `[n_steps, features]` (each row sums to 1 over its reads).

    The reference's `AggregateRationalizer` + `DeltaProbImportanceScoreEvaluator` +
    `TopKStoppingConditionEvaluator`, with the probes of every step in one batch: each of `num_probes` probes
    per step starts from random logit scores; each round replaces a random `replacing_ratio` of the tokens,
    and adds to each token logit((±Δp + 1) / 2), Δp being the drop of the target's probability (+ for the
    replaced tokens, - for the others); a probe stops once its target is in the top `stopping_condition_top_k`
    predictions with only its top tokens kept (the others replaced; `invert_keep`: the other way round). A
    step's score is the mean softmax over its stopped probes (over all its probes if none stopped within
    `max_probe_steps` rounds: the reference divides by zero there).
    """
    n_steps, n_features = task.reads.shape
    device = task.ids.device
    probes = args.num_probes
    step_of = torch.arange(n_steps, device=device).repeat_interleave(probes)  # row → step
    reads = task.reads[step_of]
    cdf = task.proposal.float().cumsum(dim=-1)
    logits = torch.rand((len(step_of), n_features), generator=generator).to(device)
    read_len = reads.sum(dim=-1)
    top_n = (
        torch.full_like(read_len, args.keep_top_n)
        if args.keep_top_n
        else torch.ceil(float(args.keep_ratio or 0.0) * read_len.double()).long()
    )
    stopped = torch.zeros(len(step_of), dtype=torch.bool, device=device)
    active = torch.arange(len(step_of), device=device)
    for _ in range(args.max_probe_steps):
        if not len(active):
            break
        steps = step_of[active]
        # Probe: replace a random share of the tokens, score the drop of the target's probability.
        replaced = (torch.rand((len(active), n_features), generator=generator) < args.replacing_ratio).to(
            device
        )
        ids = torch.where(replaced, _sample(cdf, len(active), generator), task.ids)
        p = torch.softmax(predict(ids, steps).float(), dim=-1).gather(1, task.targets[steps][:, None])[:, 0]
        drop = (task.p_original[steps] - p)[:, None]
        delta = torch.where(replaced, drop, -drop)
        logits[active] += torch.logit(delta * 0.5 + 0.5, eps=1e-6)
        importance = torch.softmax(logits[active].masked_fill(~reads[active], -math.inf), dim=-1)
        # Stopping condition: with only the top tokens kept, is the target among the top k predictions?
        rank = importance.argsort(dim=-1, descending=True).argsort(dim=-1)
        top = rank < top_n[active][:, None]
        swap = top if args.invert_keep else ~top
        ids = torch.where(swap, _sample(cdf, len(active), generator), task.ids)
        k = min(args.stopping_condition_top_k, task.proposal.shape[1])
        best = predict(ids, steps).topk(k, dim=-1).indices
        hit = (best == task.targets[steps][:, None]).any(dim=-1)
        stopped[active[hit]] = True
        active = active[~hit]
    importance = torch.softmax(logits.masked_fill(~reads, -math.inf), dim=-1).view(n_steps, probes, -1)
    done = stopped.view(n_steps, probes)
    done = torch.where(done.any(dim=1, keepdim=True), done, torch.ones_like(done))
    return (importance * done[..., None]).sum(dim=1) / done.sum(dim=1, keepdim=True)
