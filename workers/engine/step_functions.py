"""Step functions: scores of the model's prediction at each attributed step, from its logits.

Each takes a `StepFunctionArgs` for a chunk of steps (logits `[batch, n_steps, vocab]`, targets `[n_steps]`,
the contrastive side, its own arguments) and returns `[batch, n_steps]`, so one forward over the whole
sequence scores every step at once. Attributable ones are differentiable. Ids, descriptions and argument
models live in `schemas/step_functions.py`; formulas follow the reference library's step functions, with
its batch-of-one crashes and NaNs replaced by the defined values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from schemas.step_functions import STEP_FUNCTION_SPECS
from workers.types import ContrastView, StepFunction, StepFunctionArgs


class NoActiveDropoutError(RuntimeError):
    """Monte Carlo dropout saw identical noisy forwards: the model has no active dropout."""


def _gather(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    index = targets.expand(*scores.shape[:-1]).unsqueeze(-1)
    return scores.gather(-1, index).squeeze(-1)


def _contrast(args: StepFunctionArgs) -> ContrastView:
    if args.contrast is None:
        raise ValueError("a contrastive step function needs contrast_targets or contrast_sources")
    return args.contrast


def _prob(logits: torch.Tensor, targets: torch.Tensor, logprob: bool = False) -> torch.Tensor:
    scores = logits.log_softmax(dim=-1) if logprob else logits.softmax(dim=-1)
    return _gather(scores, targets)


def logit(args: StepFunctionArgs) -> torch.Tensor:
    """Logit of the target token."""
    return _gather(args.logits, args.targets)


def probability(args: StepFunctionArgs) -> torch.Tensor:
    """Probability (or log-probability) of the target token."""
    return _prob(args.logits, args.targets, args.params.logprob)


def entropy(args: StepFunctionArgs) -> torch.Tensor:
    """Entropy (nats) of the next-token distribution."""
    logprobs = args.logits.log_softmax(dim=-1)
    return -(logprobs.exp() * logprobs).sum(dim=-1)


def crossentropy(args: StepFunctionArgs) -> torch.Tensor:
    """Cross entropy (nats) of the target token: -log p(target)."""
    return -_prob(args.logits, args.targets, logprob=True)


def perplexity(args: StepFunctionArgs) -> torch.Tensor:
    """exp(crossentropy)."""
    return crossentropy(args).exp()


def contrast_logits(args: StepFunctionArgs) -> torch.Tensor:
    """Logit of the contrastive target token on the contrastive side."""
    view = _contrast(args)
    return _gather(view.logits, view.targets)


def contrast_prob(args: StepFunctionArgs) -> torch.Tensor:
    """Probability (or log-probability) of the contrastive target token on the contrastive side."""
    view = _contrast(args)
    return _prob(view.logits, view.targets, args.params.logprob)


def contrast_logits_diff(args: StepFunctionArgs) -> torch.Tensor:
    """Logit of the target minus the logit of the contrastive target."""
    return logit(args) - contrast_logits(args)


def contrast_prob_diff(args: StepFunctionArgs) -> torch.Tensor:
    """Probability of the target minus the probability of the contrastive target."""
    return _prob(args.logits, args.targets, args.params.logprob) - contrast_prob(args)


def pcxmi(args: StepFunctionArgs) -> torch.Tensor:
    """-log2(p(target) / p_contrast(contrast target))."""
    view = _contrast(args)
    return -torch.log2(_prob(args.logits, args.targets) / _prob(view.logits, view.targets))


def in_context_pvi(args: StepFunctionArgs) -> torch.Tensor:
    """-log p(target) + log p_contrast(contrast target)."""
    view = _contrast(args)
    return -_prob(args.logits, args.targets, True) + _prob(view.logits, view.targets, True)


def _top_p_mask(logits: torch.Tensor, top_p: float, min_tokens_to_keep: int) -> torch.Tensor:
    """True for tokens outside the nucleus of cumulative probability `top_p` (the reference's rule)."""
    sorted_logits, order = torch.sort(logits, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    remove[..., -min_tokens_to_keep:] = False
    return remove.scatter(-1, order, remove)


def _top_k_mask(logits: torch.Tensor, top_k: int, min_tokens_to_keep: int) -> torch.Tensor:
    k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
    return logits < logits.topk(k).values[..., -1:]


def kl_divergence(args: StepFunctionArgs) -> torch.Tensor:
    """KL(P || Q) in nats, P the original next-token distribution, Q the contrastive forward's.

    With `top_p` / `top_k`, both distributions are restricted to the tokens kept by the filter on the sum of
    the two logits (the reference's "merged" filter) and renormalised; removed tokens contribute nothing
    (the reference returns NaN there).
    """
    params = args.params
    original = args.logits
    contrast = _contrast(args).forward().to(original.dtype).expand_as(original)
    removed = torch.zeros_like(original, dtype=torch.bool)
    if params.top_p < 1.0:
        removed |= _top_p_mask(original + contrast, params.top_p, params.min_tokens_to_keep)
    if params.top_k > 0:
        kept_sum = (original + contrast).masked_fill(removed, -math.inf)
        removed |= _top_k_mask(kept_sum, params.top_k, params.min_tokens_to_keep)
    p_log = original.masked_fill(removed, -math.inf).log_softmax(dim=-1)
    q_log = contrast.masked_fill(removed, -math.inf).log_softmax(dim=-1)
    terms = p_log.exp() * (p_log - q_log)
    return terms.masked_fill(removed, 0.0).sum(dim=-1)


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU (and current CUDA) generators for the block, restoring them afterwards."""
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def mc_dropout_prob_avg(args: StepFunctionArgs) -> torch.Tensor:
    """(p - mean(noisy p)) / std(noisy p) over `n_mcd_steps` forwards with dropout active.

    Raises:
        NoActiveDropoutError: every noisy forward equals the others (the model has no active dropout), where
            the reference would return NaN.
    """
    params = args.params
    if args.forward_again is None:
        raise ValueError("mc_dropout_prob_avg needs the engine's forward_again")
    original = _prob(args.logits, args.targets, params.logprob)
    with _seeded(params.seed):
        noisy = torch.stack(
            [_prob(args.forward_again(), args.targets, params.logprob) for _ in range(params.n_mcd_steps)]
        )
    spread = noisy.std(dim=0)
    if not bool((spread > 0).any()):
        raise NoActiveDropoutError("the model has no active dropout: its noisy forwards are all the same")
    return (original - noisy.mean(dim=0)) / spread


def top_p_size(args: StepFunctionArgs) -> torch.Tensor:
    """Number of tokens in the nucleus of cumulative probability `top_p`."""
    removed = _top_p_mask(args.logits, args.params.top_p, 1)
    return (~removed).sum(dim=-1).to(args.logits.dtype)


STEP_FUNCTION_REGISTRY: dict[str, StepFunction] = {}
"""Implemented step functions by id; lists the same ids as `schemas.step_functions.STEP_FUNCTION_SPECS`."""


def register_step_function(name: str, fn: StepFunction, overwrite: bool = False) -> None:
    """Add a step function; refuses to replace an existing id silently, and ids the catalogue lacks."""
    if name in STEP_FUNCTION_REGISTRY and not overwrite:
        raise ValueError(f"step function {name!r} is already registered")
    if name not in STEP_FUNCTION_SPECS:
        raise ValueError(f"step function {name!r} has no entry in schemas.step_functions")
    STEP_FUNCTION_REGISTRY[name] = fn


for _fn in (
    logit,
    probability,
    entropy,
    crossentropy,
    perplexity,
    contrast_logits,
    contrast_prob,
    contrast_logits_diff,
    contrast_prob_diff,
    pcxmi,
    kl_divergence,
    in_context_pvi,
    mc_dropout_prob_avg,
    top_p_size,
):
    register_step_function(_fn.__name__, _fn)
