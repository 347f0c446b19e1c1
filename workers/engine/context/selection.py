"""Which tokens pass a threshold: the reference's `get_scores_threshold` and `filter_rank_tokens`.

Computed with torch in float32 like the reference, so that a score on the threshold is selected or not
exactly as there.
"""

from __future__ import annotations

import torch


def scores_threshold(scores: list[float], std_weight: float | None) -> float:
    """Mean + `std_weight` x standard deviation (unbiased) of the scores; the mean for one score or a weight
    of 0; 0 without scores."""
    if std_weight is None or not scores:
        return 0.0
    values = torch.tensor(scores)
    if std_weight == 0 or len(scores) == 1:
        return float(values.mean())
    return float(values.mean() + std_weight * values.std())


def rank_tokens(
    tokens: list[str], scores: list[float], std_threshold: float | None, topk: int | None
) -> tuple[list[tuple[int, float, str]], float]:
    """(index, score, token) of the tokens whose absolute score reaches the threshold, largest first, at
    most `topk`; and the threshold. Scores past the last token count for the threshold only."""
    ranked = sorted(
        zip(range(len(scores)), scores, tokens, strict=False), key=lambda x: abs(x[1]), reverse=True
    )
    threshold = scores_threshold(scores, std_threshold)
    # Compared as the reference does, with the threshold as a float32 value.
    limit = torch.tensor(threshold, dtype=torch.float32)
    kept = [(i, s, t) for i, s, t in ranked if bool(abs(s) >= limit)]
    if topk:
        kept = kept[:topk]
    return kept, threshold
